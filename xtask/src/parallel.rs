//! Runs a function on every item at once, one scoped thread per item: for work that mostly
//! waits on other processes (docker calls, HTTP), where the slowest item, not the sum, is the
//! cost. The results come back in the items' order; a panic on a thread is raised again here,
//! as it would have been in a loop.

/// `f` of each item, each on its own thread, in the items' order.
pub fn map<I: Send, T: Send>(
    items: impl IntoIterator<Item = I>,
    f: impl Fn(I) -> T + Sync,
) -> Vec<T> {
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .into_iter()
            .map(|item| scope.spawn(move || f(item)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_the_items_order_whichever_finishes_first() {
        let slow_first = map([30u64, 0, 10], |ms| {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            ms
        });
        assert_eq!(slow_first, vec![30, 0, 10]);
    }

    #[test]
    fn the_items_run_at_once() {
        let started = std::time::Instant::now();
        map(0..4, |_| {
            std::thread::sleep(std::time::Duration::from_millis(200))
        });
        assert!(started.elapsed() < std::time::Duration::from_millis(700));
    }

    #[test]
    #[should_panic(expected = "item 2")]
    fn a_panic_on_a_thread_is_raised_again() {
        map(0..3, |i| {
            if i == 2 {
                panic!("item 2");
            }
        });
    }
}

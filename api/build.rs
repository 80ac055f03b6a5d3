//! Rebuilds the api when a migration file is added or changed: `sqlx::migrate!` embeds
//! api/migrations/ at compile time, and Cargo does not track files read by a macro.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}

//! What several resources parse the same way: a document id in the path and the `limit` /
//! `offset` pagination of a listing, with the same 400 answers everywhere.

use serde::Deserialize;
use uuid::Uuid;

use crate::error::ApiError;

/// A page's size when the request gives no `limit`.
const DEFAULT_LIMIT: i64 = 20;
/// The largest `limit` a request may ask for.
const MAX_LIMIT: i64 = 100;

/// A document id from the path; anything but a UUID is a 400 `invalid_id`.
pub fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw).map_err(|_| {
        ApiError::bad_request(
            "invalid_id",
            format!("{raw:?} is not a document id (expected a UUID)"),
        )
    })
}

/// `?limit=&offset=` as the client sent them: strings, so a bad value is our 400, not the
/// extractor's.
#[derive(Debug, Deserialize)]
pub struct PageParams {
    limit: Option<String>,
    offset: Option<String>,
}

/// A validated page: `limit` 1 to 100 (default 20), `offset` at least 0 (default 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl PageParams {
    /// The page asked for; a value out of range is a 400 `invalid_pagination`.
    pub fn page(&self) -> Result<Page, ApiError> {
        Ok(Page {
            limit: page_number(self.limit.as_deref(), "limit", DEFAULT_LIMIT, 1..=MAX_LIMIT)?,
            offset: page_number(self.offset.as_deref(), "offset", 0, 0..=i64::MAX)?,
        })
    }
}

fn page_number(
    raw: Option<&str>,
    what: &str,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, ApiError> {
    let Some(raw) = raw else { return Ok(default) };
    raw.parse::<i64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            let expected = if *range.end() == i64::MAX {
                format!("a whole number of at least {}", range.start())
            } else {
                format!("a whole number from {} to {}", range.start(), range.end())
            };
            ApiError::bad_request(
                "invalid_pagination",
                format!("{what} must be {expected}, got {raw:?}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(limit: Option<&str>, offset: Option<&str>) -> PageParams {
        PageParams {
            limit: limit.map(str::to_owned),
            offset: offset.map(str::to_owned),
        }
    }

    #[test]
    fn a_page_defaults_to_20_from_0_and_takes_values_in_range() {
        assert_eq!(
            params(None, None).page().unwrap(),
            Page {
                limit: 20,
                offset: 0
            }
        );
        assert_eq!(
            params(Some("100"), Some("7")).page().unwrap(),
            Page {
                limit: 100,
                offset: 7
            }
        );
    }

    #[test]
    fn a_page_out_of_range_or_not_a_number_is_refused() {
        for (limit, offset) in [
            (Some("0"), None),
            (Some("101"), None),
            (Some("ten"), None),
            (None, Some("-1")),
            (None, Some("1.5")),
        ] {
            assert!(
                params(limit, offset).page().is_err(),
                "{limit:?} {offset:?}"
            );
        }
    }

    #[test]
    fn only_a_uuid_is_a_document_id() {
        assert!(parse_id("00000000-0000-0000-0000-000000000000").is_ok());
        assert!(parse_id("../etc/passwd").is_err());
        assert!(parse_id("").is_err());
    }
}

//! One pagination style for every list route (issue 14 item 1, R-2.8).
//!
//! A list is `GET` with `?limit=` (1-500, default 50) and `?after=<cursor>`; the
//! answer is a [`Page`]: `{"items": [...], "next": "<cursor>" | null}`. `next` is
//! the `after` of the following page, `null` on the last one. A cursor is opaque to
//! the client (base64url of the last item's key as JSON); a cursor that does not
//! decode is a 400 `invalid-cursor`, a limit out of range a 400 `invalid-limit`.
//!
//! How a route uses it:
//! - its query struct has `limit: Option<u32>` and `after: Option<String>` beside
//!   its own filters (no `#[serde(flatten)]`: flattened fields lose their types in
//!   query strings), or is [`PageQuery`] itself, or [`PartnerPageQuery`];
//! - in SQL it asks for [`PageQuery::fetch`] rows (one more than the page) past
//!   [`PageQuery::after`], then answers [`Page::from_rows`] with the key it sorted
//!   by; a short list read whole may use [`Page::from_sorted`] instead.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiError;

/// Items per page when the client gives no `limit`.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest `limit` a client may ask for.
pub const MAX_LIMIT: u32 = 500;

/// One page of a list: the items, and the cursor of the next page (`null` on the
/// last page).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    /// The items of this page, in the list's order.
    pub items: Vec<T>,
    /// Pass as `?after=` for the next page; `null` when this page is the last.
    #[schema(nullable = true, example = "MTIz")]
    pub next: Option<String>,
}

/// The paging part of a list's query: `?limit=&after=`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
}

/// `?partner=&limit=&after=`: a list the admin reads for one partner (or all).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PartnerPageQuery {
    /// The admin's choice of partner (a partner key may name only itself).
    pub partner: Option<String>,
    /// Items per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
}

impl PartnerPageQuery {
    /// The paging part.
    pub fn page(&self) -> PageQuery {
        PageQuery::new(self.limit, self.after.clone())
    }
}

impl PageQuery {
    /// From the two fields of a route's own query struct.
    pub fn new(limit: Option<u32>, after: Option<String>) -> Self {
        Self { limit, after }
    }

    /// The page size asked for.
    ///
    /// # Errors
    /// 400 `invalid-limit` outside 1-500.
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(i64::from(DEFAULT_LIMIT)),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(i64::from(n)),
            Some(n) => Err(ApiError::bad_request(
                "invalid-limit",
                format!("limit {n} is outside 1-{MAX_LIMIT}"),
            )),
        }
    }

    /// Check `limit` and `after` before anything is looked up, so a bad one is
    /// its own 400 whatever else the request names.
    ///
    /// # Errors
    /// As [`PageQuery::limit`] and [`PageQuery::after`].
    pub fn check(&self) -> Result<(), ApiError> {
        self.limit()?;
        self.after::<serde_json::Value>()?;
        Ok(())
    }

    /// How many rows to read: one more than the page, to know whether there is a
    /// next one.
    ///
    /// # Errors
    /// As [`PageQuery::limit`].
    pub fn fetch(&self) -> Result<i64, ApiError> {
        Ok(self.limit()? + 1)
    }

    /// The key of the last item of the previous page, if any.
    ///
    /// # Errors
    /// 400 `invalid-cursor` when `after` is not a cursor this list gave out.
    pub fn after<K: DeserializeOwned>(&self) -> Result<Option<K>, ApiError> {
        let Some(raw) = &self.after else {
            return Ok(None);
        };
        URL_SAFE_NO_PAD
            .decode(raw.as_bytes())
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid-cursor",
                    "`after` must be the `next` of a previous page of this list",
                )
            })
    }
}

/// The cursor that points past an item with this key.
pub fn cursor<K: Serialize>(key: &K) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).unwrap_or_default())
}

/// Which way a list is sorted by its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Smallest key first (e.g. upload order).
    Ascending,
    /// Largest key first (newest first).
    Descending,
}

impl<T> Page<T> {
    /// A page from rows read with [`PageQuery::fetch`] (at most one more than the
    /// page): the extra row only says a next page exists.
    ///
    /// # Errors
    /// As [`PageQuery::limit`].
    pub fn from_rows<K: Serialize>(
        mut rows: Vec<T>,
        query: &PageQuery,
        key: impl Fn(&T) -> K,
    ) -> Result<Self, ApiError> {
        let limit = usize::try_from(query.limit()?).unwrap_or(usize::MAX);
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| cursor(&key(last)))
        } else {
            None
        };
        Ok(Self { items: rows, next })
    }

    /// A page of a short list read whole and sorted by `key` in `order`.
    ///
    /// # Errors
    /// As [`PageQuery::limit`] and [`PageQuery::after`].
    pub fn from_sorted<K: Serialize + DeserializeOwned + Ord>(
        all: Vec<T>,
        query: &PageQuery,
        order: Order,
        key: impl Fn(&T) -> K,
    ) -> Result<Self, ApiError> {
        let fetch = usize::try_from(query.fetch()?).unwrap_or(usize::MAX);
        let after: Option<K> = query.after()?;
        let rows: Vec<T> = all
            .into_iter()
            .filter(|item| match &after {
                None => true,
                Some(a) => match order {
                    Order::Ascending => key(item) > *a,
                    Order::Descending => key(item) < *a,
                },
            })
            .take(fetch)
            .collect();
        Self::from_rows(rows, query, key)
    }

    /// The same page with each item changed.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next: self.next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(limit: Option<u32>, after: Option<String>) -> PageQuery {
        PageQuery::new(limit, after)
    }

    #[test]
    fn pages_walk_a_sorted_list_once() {
        let all: Vec<i64> = (1..=7).rev().collect();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let q = query(Some(3), after.clone());
            let page = Page::from_sorted(all.clone(), &q, Order::Descending, |i| *i)
                .expect("a valid query");
            seen.extend(page.items);
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, all);
    }

    #[test]
    fn a_full_last_page_has_no_next() {
        let q = query(Some(2), None);
        let page = Page::from_rows(vec![1, 2], &q, |i| *i).expect("valid");
        assert_eq!(page.next, None);
        let page = Page::from_rows(vec![1, 2, 3], &q, |i| *i).expect("valid");
        assert_eq!((page.items, page.next), (vec![1, 2], Some(cursor(&2))));
    }

    #[test]
    fn bad_limits_and_cursors_are_precise_400s() {
        for limit in [0, 501] {
            let e = query(Some(limit), None).limit().expect_err("out of range");
            assert_eq!(e.code, "invalid-limit");
        }
        let e = query(None, Some("not a cursor!".into()))
            .after::<i64>()
            .expect_err("garbage");
        assert_eq!(e.code, "invalid-cursor");
        assert_eq!(query(None, None).limit().expect("default"), 50);
    }
}

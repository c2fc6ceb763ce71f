//! The partner's content library: texts uploaded over the platform's API, grouped
//! in named collections (e.g. `jokes`), read in upload order.
//!
//! ```no_run
//! use tongdao_sdk::{clock::Date, content, Bulletin, BulletinRequest, ModuleError};
//!
//! // One item a day, going round the collection.
//! fn bulletin(request: BulletinRequest) -> Result<Bulletin, ModuleError> {
//!     let day = Date::parse(&request.date)
//!         .ok_or_else(|| ModuleError::InvalidRequest(format!("bad date {}", request.date)))?
//!         .days_since_epoch();
//!     let item = content::item_for_day("jokes", day)
//!         .ok_or_else(|| ModuleError::NoContent("the `jokes` collection is empty".into()))?;
//!     Ok(Bulletin::Single(item.text))
//! }
//! # let _ = bulletin;
//! ```

use crate::Item;
use crate::bindings::tongdao::partner::content as host;

/// How many items `collection` holds (0 if it does not exist).
pub fn count(collection: &str) -> u32 {
    host::count(collection)
}

/// The item at `index` (0-based, in upload order) of `collection`, if any.
pub fn get(collection: &str, index: u32) -> Option<Item> {
    host::get(collection, index)
}

/// The item of `collection` for day number `day`, going round the collection:
/// consecutive days get consecutive items, and after the last item the first one
/// comes again. `None` if the collection is empty. Two host calls.
///
/// `day` is usually [`Date::days_since_epoch`](crate::clock::Date::days_since_epoch)
/// of the push's date, which gives the same item when the same push is asked for
/// again.
pub fn item_for_day(collection: &str, day: i64) -> Option<Item> {
    let index = index_for_day(day, count(collection) as usize)?;
    get(collection, u32::try_from(index).ok()?)
}

/// The index into a list of `len` entries for day number `day`, going round the
/// list (`day` modulo `len`, never negative). `None` if `len` is 0. Makes no host
/// call: use it to pick from a table built into the module, too.
///
/// ```
/// use tongdao_sdk::content::index_for_day;
///
/// const TIPS: [&str; 3] = ["drink water", "take a walk", "call your mother"];
/// assert_eq!(index_for_day(20148, TIPS.len()), Some(0));
/// assert_eq!(index_for_day(20149, TIPS.len()), Some(1));
/// assert_eq!(index_for_day(-1, TIPS.len()), Some(2));
/// assert_eq!(index_for_day(5, 0), None);
/// ```
pub fn index_for_day(day: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).ok().filter(|&n| n > 0)?;
    usize::try_from(day.rem_euclid(len)).ok()
}

#[cfg(test)]
mod tests {
    use super::index_for_day;

    #[test]
    fn rotates() {
        let picks: Vec<_> = (-3..5).map(|d| index_for_day(d, 3)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0, 1].map(Some).to_vec());
        assert_eq!(
            index_for_day(i64::MIN, 7),
            Some(i64::MIN.rem_euclid(7) as usize)
        );
        assert_eq!(index_for_day(42, 0), None);
        assert_eq!(index_for_day(42, 1), Some(0));
    }
}

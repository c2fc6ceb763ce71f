//! Quiet hours: a local-time window in which pushes wait.

use crate::clock::local_seconds_of_day;

/// A daily window `[start, end)` in local seconds of day; it may wrap midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    start: i64,
    end: i64,
}

impl QuietHours {
    /// Parse `HH:MM-HH:MM` (or with `:SS`). Empty → `None`.
    pub fn parse(spec: &str) -> Result<Option<Self>, String> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Ok(None);
        }
        let (start, end) = spec
            .split_once('-')
            .ok_or_else(|| format!("`{spec}` is not HH:MM-HH:MM"))?;
        let start = seconds_of_day(start.trim())?;
        let end = seconds_of_day(end.trim())?;
        if start == end {
            return Err(format!("`{spec}` is an empty window"));
        }
        Ok(Some(Self { start, end }))
    }

    /// The earliest moment at or after `now_ms` outside the window.
    pub fn release_at(&self, now_ms: i64) -> i64 {
        let local = local_seconds_of_day(now_ms);
        let inside = if self.start < self.end {
            local >= self.start && local < self.end
        } else {
            local >= self.start || local < self.end
        };
        if !inside {
            return now_ms;
        }
        let wait = (self.end - local).rem_euclid(86_400);
        // Whole seconds of day: drop the sub-second part so the release is at :00.
        now_ms - now_ms.rem_euclid(1000) + wait * 1000
    }
}

fn seconds_of_day(text: &str) -> Result<i64, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let number = |s: &str, max: i64| -> Result<i64, String> {
        s.parse::<i64>()
            .ok()
            .filter(|n| (0..=max).contains(n) && s.len() == 2)
            .ok_or_else(|| format!("`{text}` is not a time of day HH:MM[:SS]"))
    };
    match parts.as_slice() {
        [h, m] => Ok(number(h, 23)? * 3600 + number(m, 59)? * 60),
        [h, m, s] => Ok(number(h, 23)? * 3600 + number(m, 59)? * 60 + number(s, 59)?),
        _ => Err(format!("`{text}` is not a time of day HH:MM[:SS]")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-28 at `h:m` Shanghai time, in ms.
    fn at(h: i64, m: i64) -> i64 {
        // 2026-11-28T00:00+08:00 = 2026-11-27T16:00Z.
        1_795_795_200_000 + (h * 3600 + m * 60) * 1000
    }

    #[test]
    fn a_window_over_midnight_releases_at_its_end() {
        let q = QuietHours::parse("21:00-08:00").unwrap().unwrap();
        assert_eq!(q.release_at(at(12, 0)), at(12, 0));
        assert_eq!(q.release_at(at(20, 59)), at(20, 59));
        assert_eq!(q.release_at(at(21, 0)), at(32, 0)); // 08:00 next day
        assert_eq!(q.release_at(at(23, 30)), at(32, 0));
        assert_eq!(q.release_at(at(3, 0)), at(8, 0));
        assert_eq!(q.release_at(at(8, 0)), at(8, 0));
    }

    #[test]
    fn bad_windows_are_refused() {
        assert!(QuietHours::parse("").unwrap().is_none());
        for bad in [
            "21:00",
            "25:00-08:00",
            "21:00-08:60",
            "9:00-10:00",
            "08:00-08:00",
        ] {
            assert!(QuietHours::parse(bad).is_err(), "{bad}");
        }
        assert!(QuietHours::parse("12:00:05-12:00:10").unwrap().is_some());
    }
}

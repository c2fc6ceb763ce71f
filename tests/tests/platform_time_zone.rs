//! Issue 13 item 2: one platform clock and time zone. With
//! `[platform] time_zone = "UTC"` a billing month, a quiet-hour window, a schedule's
//! firing and push date, and the offset a module sees all follow it, end to end: the
//! real platform over HTTP, the SMSC simulator over SMPP on loopback, a real module,
//! SQLite and PostgreSQL. Under the default (Asia/Shanghai, UTC+8) every assertion
//! below would fail, each by the eight hours.
//!
//! One process keeps one platform time zone, so every platform of this test binary
//! runs in UTC (and this file holds one test).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::env::{Env, free};
use common::{databases, guest};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use reqwest::StatusCode;
use serde_json::json;
use tongdao::billing::calendar::Month;

fn ms(rfc3339: &str) -> i64 {
    rfc3339.parse::<Timestamp>().unwrap().as_millisecond()
}

fn utc_date(ms: i64) -> String {
    Timestamp::from_millisecond(ms)
        .unwrap()
        .to_zoned(TimeZone::UTC)
        .date()
        .to_string()
}

fn hh_mm(seconds_of_day: i64) -> String {
    format!(
        "{:02}:{:02}",
        seconds_of_day / 3600,
        seconds_of_day % 3600 / 60
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item2_months_quiet_hours_schedules_and_the_module_clock_follow_the_platform_time_zone() {
    for db in databases().await {
        // A quiet window from 6 to 8 hours ahead of now, in UTC. Its middle, 7 hours
        // ahead, is 15 hours ahead of now in Shanghai's local time: outside it.
        let now_s = Timestamp::now().as_second();
        let quiet_start = (now_s + 6 * 3600).rem_euclid(86_400) / 60 * 60;
        let quiet_end = (quiet_start + 2 * 3600).rem_euclid(86_400);
        let env = Env::start(db, |c| {
            c.platform.time_zone = "UTC".into();
            c.compliance.quiet_hours = format!("{}-{}", hh_mm(quiet_start), hh_mm(quiet_end));
        })
        .await;
        assert_eq!(tongdao::clock::time_zone_name(), "UTC");

        // Months (caps, charges, statements): 20:00 UTC on 30 November is still
        // November in UTC (in Shanghai it is 04:00 on 1 December).
        let evening = ms("2026-11-30T20:00:00Z");
        assert_eq!(Month::of_ms(evening).to_string(), "2026-11");
        assert_eq!(tongdao::compliance::month_key(evening), "2026-11");
        assert_eq!(tongdao::compliance::day_key(evening), "2026-11-30");
        let december: Month = "2026-12".parse().unwrap();
        assert_eq!(december.start_ms(), ms("2026-12-01T00:00:00Z"));

        // Quiet hours: now is outside the window and leaves at once; 7 hours ahead is
        // inside, and waits for the window's end in UTC.
        let compliance = &env.server.platform.compliance;
        let now = tongdao::store::now_ms();
        assert_eq!(compliance.push_release_at(now), now);
        let inside = now + 7 * 3_600_000;
        let release = compliance.push_release_at(inside);
        assert!(release > inside, "7 hours ahead is inside the quiet window");
        assert_eq!((release / 1000).rem_euclid(86_400), quiet_end);

        // Schedules: a cron expression without a zone fires at 08:00 UTC.
        let (status, body) = env.server.upload(&env.acme, guest("clock-probe")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let service = env
            .approved_service(&env.acme, "CLK", "clock-probe", free("报时", "07"))
            .await;
        let user = "13800000077";
        let (status, body) = env.subscribe(service, user).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let schedules = format!("/v1/services/{service}/schedules");
        let (status, daily) = env
            .server
            .post(&schedules, &env.acme, json!({"cron": "0 8 * * *"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{daily}");
        assert_eq!(daily["time_zone"], "UTC");
        let now = tongdao::store::now_ms();
        let today_8 = ms(&format!("{}T08:00:00Z", utc_date(now)));
        let next_8 = if today_8 > now {
            today_8
        } else {
            today_8 + 86_400_000
        };
        assert_eq!(
            daily["next_fire_at"],
            tongdao::api::time::format(next_8),
            "{daily}"
        );

        // A one-off local time is read in UTC (in Shanghai this one would be eight
        // hours in the past and refused), fires then, and the push is for that UTC
        // date; the module sees offset 0.
        let at = Timestamp::from_second(Timestamp::now().as_second() + 3).unwrap();
        let local_at = at.to_zoned(TimeZone::UTC).datetime().to_string();
        assert!(
            !local_at.contains('Z') && !local_at.contains('+'),
            "{local_at}"
        );
        let (status, once) = env
            .server
            .post(&schedules, &env.acme, json!({"at": local_at}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{once}");
        assert_eq!(
            once["at"],
            tongdao::api::time::format(at.as_millisecond()),
            "{once}"
        );
        let date = utc_date(at.as_millisecond());
        let text = common::poll_until(Duration::from_secs(30), async || {
            let inbox = env.inbox(user);
            match inbox.iter().find(|t| t.contains("offset=")) {
                Some(text) => Ok(text.clone()),
                None => Err(format!("no push reached {user}: {inbox:?}")),
            }
        })
        .await;
        assert!(text.contains("offset=0 "), "{text}");
        assert!(text.contains(&format!("date={date}")), "{text}");
        let local = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("local="))
            .unwrap();
        let local_now = utc_date(tongdao::store::now_ms());
        assert!(
            local == date || local == local_now,
            "the module's local date {local} is UTC's ({date} or {local_now})"
        );
        let (status, runs) = env
            .server
            .get(&format!("/v1/services/{service}/runs"), &env.acme)
            .await;
        assert_eq!(status, StatusCode::OK, "{runs}");
        let run = runs["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["fire_at"] == tongdao::api::time::format(at.as_millisecond()))
            .unwrap_or_else(|| panic!("no run fired at {at}: {runs}"));
        assert_eq!(run["push_date"], date.as_str(), "{run}");
        env.server.stop().await;
    }
}

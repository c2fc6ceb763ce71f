//! The imported capabilities, through real modules: subscriber attributes
//! (horoscope), the key-value store (quiz), the content library (jokes), each
//! scoped to the calling partner, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use tongdao::partners::Partner;
use tongdao::runtime::{BulletinContent, BulletinRequest, CallError, MoMessage};

fn mo(subscriber: &str, service: &str, text: &str) -> MoMessage {
    MoMessage {
        subscriber: subscriber.into(),
        service: service.into(),
        text: text.into(),
        received_at_ms: tongdao::store::now_ms(),
    }
}

fn push(service: &str) -> BulletinRequest {
    BulletinRequest {
        service: service.into(),
        push_id: "push-1".into(),
        date: "2026-11-28".into(),
    }
}

async fn attribute(
    store: &tongdao::store::Store,
    partner: &Partner,
    subscriber: &str,
    name: &str,
) -> Option<String> {
    sqlx::query_as::<_, (String,)>(
        "SELECT value FROM subscriber_attributes WHERE partner_id = $1 AND subscriber_id = $2 AND name = $3",
    )
    .bind(partner.id)
    .bind(subscriber)
    .bind(name)
    .fetch_optional(store.pool())
    .await
    .unwrap()
    .map(|(v,)| v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn horoscope_sets_a_sign_and_gets_its_variant() {
    for db in common::stores().await {
        let store = &db.store;
        let registry = common::registry(store);
        let acme = common::partner(store, "acme").await;
        let rival = common::partner(store, "rival").await;
        registry
            .upload(&acme, &common::guest("horoscope"), "t")
            .await
            .unwrap();
        common::subscriber(store, &acme, "sub-acme-1").await;
        common::subscriber(store, &rival, "sub-rival-1").await;

        let reply = registry
            .on_mo(&acme, "horoscope", &mo("sub-acme-1", "XZ", " 狮子 "))
            .await
            .unwrap();
        let reply = reply.result.unwrap().unwrap();
        assert!(reply.contains("狮子"), "{}: {reply}", db.name);
        assert_eq!(
            attribute(store, &acme, "sub-acme-1", "sign")
                .await
                .as_deref(),
            Some("leo")
        );

        // The bulletin has 12 variants; the subscriber's sign picks theirs.
        let content = registry
            .bulletin(&acme, "horoscope", &push("XZ"))
            .await
            .unwrap()
            .result
            .unwrap();
        let BulletinContent::Keyed {
            attribute: attr,
            variants,
            fallback,
        } = &content
        else {
            panic!("expected a keyed bulletin");
        };
        assert_eq!(attr, "sign");
        assert_eq!(variants.len(), 12);
        let leo = content.text_for(Some("leo")).unwrap();
        assert!(leo.contains("狮子"), "{leo}");
        assert_eq!(content.text_for(None), fallback.as_deref());

        // A subscriber of another partner cannot be touched: the host says unknown.
        let outcome = registry
            .on_mo(&acme, "horoscope", &mo("sub-rival-1", "XZ", "狮子"))
            .await
            .unwrap();
        assert!(
            matches!(
                outcome.result,
                Err(CallError::Module {
                    kind: "host-failure",
                    ..
                })
            ),
            "{}: {:?}",
            db.name,
            outcome.result
        );
        assert_eq!(attribute(store, &rival, "sub-rival-1", "sign").await, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiz_keeps_scores_in_its_own_partners_store() {
    for db in common::stores().await {
        let store = &db.store;
        let registry = common::registry(store);
        let acme = common::partner(store, "acme").await;
        let rival = common::partner(store, "rival").await;
        registry
            .upload(&acme, &common::guest("quiz"), "t")
            .await
            .unwrap();
        registry
            .upload(&rival, &common::guest("quiz"), "t")
            .await
            .unwrap();
        common::subscriber(store, &rival, "bob").await;

        // Four players answer A, B, C and D (full-width and lower case too): exactly
        // one is right, and only that one scores.
        let mut right = 0;
        for (player, answer) in [
            ("player-a", "a"),
            ("player-b", "Ｂ"),
            ("player-c", " C "),
            ("player-d", "d"),
        ] {
            common::subscriber(store, &acme, player).await;
            let reply = registry
                .on_mo(&acme, "quiz", &mo(player, "DT", answer))
                .await
                .unwrap();
            let reply = reply.result.unwrap().unwrap();
            if reply.contains("回答正确") {
                right += 1;
            } else {
                assert!(reply.contains("正确答案"), "{}: {reply}", db.name);
            }
        }
        assert_eq!(right, 1, "{}: exactly one of A-D is right", db.name);
        // State survives between calls (each a fresh instance) only through the store.
        let again = registry
            .on_mo(&acme, "quiz", &mo("player-a", "DT", "B"))
            .await
            .unwrap();
        assert!(again.result.unwrap().unwrap().contains("已经答过"));

        let board = registry
            .on_mo(&acme, "quiz", &mo("player-a", "DT", "TOP"))
            .await
            .unwrap();
        let board = board.result.unwrap().unwrap();
        assert!(
            board.contains("【排行榜】") && board.contains("1分"),
            "{board}"
        );

        // The rival's copy of the same module sees none of acme's keys.
        let theirs = registry
            .on_mo(&rival, "quiz", &mo("bob", "DT", "TOP"))
            .await
            .unwrap();
        let theirs = theirs.result.unwrap().unwrap();
        assert_eq!(theirs, "还没有人上榜，快来答题吧！", "{}", db.name);
        let (rival_keys,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM kv_entries WHERE partner_id = $1")
                .bind(rival.id)
                .fetch_one(store.pool())
                .await
                .unwrap();
        let (acme_keys,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM kv_entries WHERE partner_id = $1")
                .bind(acme.id)
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(rival_keys, 0, "{}", db.name);
        assert!(acme_keys >= 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jokes_rotate_through_the_partners_library() {
    for db in common::stores().await {
        let store = &db.store;
        let registry = common::registry(store);
        let acme = common::partner(store, "acme").await;
        let rival = common::partner(store, "rival").await;
        registry
            .upload(&acme, &common::guest("jokes"), "t")
            .await
            .unwrap();
        registry
            .upload(&rival, &common::guest("jokes"), "t")
            .await
            .unwrap();

        // An empty library is a typed no-content error, recorded as a fault.
        let empty = registry
            .bulletin(&acme, "jokes", &push("XH"))
            .await
            .unwrap();
        assert!(matches!(
            empty.result,
            Err(CallError::Module {
                kind: "no-content",
                ..
            })
        ));
        assert_eq!(
            registry.faults(&acme, "jokes", 5).await.unwrap()[0].kind,
            "module-error"
        );

        let jokes: Vec<String> = (0..5).map(|i| format!("笑话 {i}")).collect();
        let items = jokes
            .iter()
            .map(|t| tongdao::content::NewItem {
                id: None,
                text: t.clone(),
                tags: vec![],
            })
            .collect();
        tongdao::content::add(store, acme.id, "jokes", items)
            .await
            .unwrap();

        // Consecutive days walk through the collection.
        let mut seen = std::collections::HashSet::new();
        for day in 1..=5 {
            let request = BulletinRequest {
                date: format!("2026-12-0{day}"),
                ..push("XH")
            };
            let content = registry
                .bulletin(&acme, "jokes", &request)
                .await
                .unwrap()
                .result
                .unwrap();
            let BulletinContent::Single { text } = content else {
                panic!("expected a single text");
            };
            assert!(jokes.contains(&text), "{text}");
            seen.insert(text);
        }
        assert_eq!(
            seen.len(),
            5,
            "{}: five days, five different jokes",
            db.name
        );

        // The rival's module reads its own (empty) library, not acme's.
        let theirs = registry
            .bulletin(&rival, "jokes", &push("XH"))
            .await
            .unwrap();
        assert!(matches!(
            theirs.result,
            Err(CallError::Module {
                kind: "no-content",
                ..
            })
        ));
    }
}

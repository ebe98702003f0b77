//! One conformance suite for the waiting room's line, run against both implementations: the
//! in-process `memory` line and the `redis` line on a real Redis (with a per-test key prefix).
//! Time is passed in, so grace periods and admission windows are exact, not slept through.

use crate::common;

use marquee_server::waiting_room::line::redis::RedisLine;
use marquee_server::waiting_room::line::{
    Admitted, Ending, Joined, Line, LineView, MemoryLine, Place, Timing,
};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

async fn memory() -> Line {
    Line::memory(Arc::new(MemoryLine::default()))
}

async fn redis() -> Line {
    Line::redis(Arc::new(
        RedisLine::connect(&common::redis_url(), &common::unique_prefix())
            .await
            .expect("Redis reachable"),
    ))
}

const T0: u64 = 1_800_000_000_000;

fn timing() -> Timing {
    Timing {
        grace: Duration::from_secs(120),
        admission_ttl: Duration::from_secs(600),
        show_window: Duration::from_secs(30),
    }
}

fn placed(joined: Joined) -> (String, u64) {
    match joined {
        Joined::New(p) | Joined::Attached(p) => (p.id, p.seq),
        other => panic!("expected a place, got {other:?}"),
    }
}

async fn live(line: &Line) -> Uuid {
    let onsale = Uuid::new_v4();
    line.close_pre_queue(onsale).await.unwrap();
    line.draw(onsale, &[]).await.unwrap();
    onsale
}

async fn view(line: &Line, onsale: Uuid) -> LineView {
    line.view(onsale, u64::MAX >> 12).await.unwrap()
}

fn users(admitted: &[Admitted]) -> Vec<&str> {
    admitted.iter().map(|a| a.user.as_str()).collect()
}

// ---- the suite -------------------------------------------------------------------------------

async fn nobody_joins_before_the_pre_queue_or_after_the_close(line: Line) {
    let onsale = Uuid::new_v4();
    assert_eq!(
        line.join(onsale, "u1", None).await.unwrap(),
        Joined::Refused {
            status: "scheduled".into()
        }
    );
    line.set_status(onsale, "closed").await.unwrap();
    assert_eq!(
        line.join(onsale, "u1", None).await.unwrap(),
        Joined::Refused {
            status: "closed".into()
        }
    );
    assert_eq!(view(&line, onsale).await.waiting, 0);
}

async fn one_place_per_buyer_and_every_join_after_the_first_attaches(line: Line) {
    let onsale = live(&line).await;
    let first = line.join(onsale, "u1", None).await.unwrap();
    let Joined::New(place) = first else {
        panic!("{first:?}")
    };
    assert_eq!(place.seq, 1);
    // A second tab (no attachment yet) and the same tab again both find the same place.
    assert_eq!(
        line.join(onsale, "u1", None).await.unwrap(),
        Joined::Attached(place.clone())
    );
    assert_eq!(
        line.join(onsale, "u1", Some(&place.id)).await.unwrap(),
        Joined::Attached(place.clone())
    );
    let (_, seq2) = placed(line.join(onsale, "u2", None).await.unwrap());
    assert_eq!(seq2, 2);
    let v = view(&line, onsale).await;
    assert_eq!(
        (v.waiting, v.last_seq, v.ahead(1), v.ahead(2)),
        (2, 2, Some(0), Some(1))
    );
}

async fn the_pre_queue_is_drawn_in_the_given_order_ahead_of_later_joiners(line: Line) {
    let onsale = Uuid::new_v4();
    line.set_status(onsale, "pre_queue").await.unwrap();
    let mut ids = Vec::new();
    for u in ["a", "b", "c", "d"] {
        let (id, seq) = placed(line.join(onsale, u, None).await.unwrap());
        assert_eq!(seq, 0, "undrawn during the pre-queue");
        ids.push((id, u));
    }
    // Nothing is admitted before the start.
    assert!(
        line.admit(onsale, 10, 10, T0, &timing())
            .await
            .unwrap()
            .is_empty()
    );
    let pending = line.close_pre_queue(onsale).await.unwrap();
    let mut expected: Vec<String> = ids.iter().map(|(id, _)| id.clone()).collect();
    expected.sort();
    assert_eq!(pending, expected, "every undrawn place, sorted");
    // Joins between the close and the draw queue behind the reserved block...
    let (_, late) = placed(line.join(onsale, "late", None).await.unwrap());
    assert_eq!(late, 5);
    // ...and nothing is admitted until the draw.
    assert!(
        line.admit(onsale, 10, 10, T0, &timing())
            .await
            .unwrap()
            .is_empty()
    );
    let order = vec![
        ids[2].0.clone(),
        ids[0].0.clone(),
        ids[3].0.clone(),
        ids[1].0.clone(),
    ];
    line.draw(onsale, &order).await.unwrap();
    // Closing again after the draw is a no-op.
    assert!(line.close_pre_queue(onsale).await.unwrap().is_empty());
    let place = line.place(onsale, "c").await.unwrap().unwrap();
    assert_eq!((place.id.as_str(), place.seq), (ids[2].0.as_str(), 1));
    // Read together, the places are what each read alone says, in the order asked, with
    // nothing for somebody who never joined.
    let asked: Vec<String> = ["b", "nobody", "c", "late"].map(String::from).to_vec();
    let together = line.places(onsale, &asked).await.unwrap();
    let mut alone = Vec::new();
    for user in &asked {
        alone.push(line.place(onsale, user).await.unwrap());
    }
    assert_eq!(together, alone);
    assert_eq!(
        together
            .iter()
            .map(|p| p.as_ref().map(|p| p.seq))
            .collect::<Vec<_>>(),
        [Some(4), None, Some(1), Some(5)]
    );
    let admitted = line.admit(onsale, 10, 10, T0, &timing()).await.unwrap();
    assert_eq!(users(&admitted), ["c", "a", "d", "b", "late"]);
    assert_eq!(
        admitted.iter().map(|a| a.place.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    // Admitted, each carries its admission's end, read together or alone.
    let together = line.places(onsale, &asked).await.unwrap();
    assert!(together[0].as_ref().unwrap().admitted_until_ms.is_some());
    assert_eq!(together[0], line.place(onsale, "b").await.unwrap());
}

async fn a_pre_queue_place_that_left_before_the_draw_leaves_a_gap(line: Line) {
    let onsale = Uuid::new_v4();
    line.set_status(onsale, "pre_queue").await.unwrap();
    let (a, _) = placed(line.join(onsale, "a", None).await.unwrap());
    let (b, _) = placed(line.join(onsale, "b", None).await.unwrap());
    let (c, _) = placed(line.join(onsale, "c", None).await.unwrap());
    line.close_pre_queue(onsale).await.unwrap();
    assert!(line.leave(onsale, "b").await.unwrap());
    line.draw(onsale, &[b, a, c]).await.unwrap();
    let v = view(&line, onsale).await;
    assert_eq!(v.gone, [1]);
    assert_eq!((v.ahead(2), v.ahead(3), v.waiting), (Some(0), Some(1), 2));
}

async fn a_line_set_live_directly_keeps_its_sequences_through_the_draw(line: Line) {
    let onsale = Uuid::new_v4();
    line.set_status(onsale, "paused").await.unwrap();
    line.join(onsale, "u1", None).await.unwrap();
    line.join(onsale, "u2", None).await.unwrap();
    // Not drawn: nothing is admitted, even when live.
    line.set_status(onsale, "live").await.unwrap();
    assert!(
        line.admit(onsale, 5, 5, T0, &timing())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(line.close_pre_queue(onsale).await.unwrap().is_empty());
    line.draw(onsale, &[]).await.unwrap();
    let (_, seq) = placed(line.join(onsale, "u3", None).await.unwrap());
    assert_eq!(seq, 3);
    let admitted = line.admit(onsale, 5, 5, T0, &timing()).await.unwrap();
    assert_eq!(users(&admitted), ["u1", "u2", "u3"]);
    assert!(view(&line, onsale).await.gone.is_empty());
}

async fn admission_follows_the_line_within_the_cap_and_only_while_live(line: Line) {
    let onsale = live(&line).await;
    for u in 1..=6 {
        line.join(onsale, &format!("u{u}"), None).await.unwrap();
    }
    let t = timing();
    let first = line.admit(onsale, 2, 3, T0, &t).await.unwrap();
    assert_eq!(users(&first), ["u1", "u2"]);
    // Only one more fits under a cap of 3; the line numbers admissions across its batches.
    let second = line.admit(onsale, 5, 3, T0, &t).await.unwrap();
    assert_eq!(users(&second), ["u3"]);
    let ordinals: Vec<u64> = first.iter().chain(&second).map(|a| a.ordinal).collect();
    assert_eq!(ordinals, [1, 2, 3]);
    assert!(line.admit(onsale, 5, 3, T0, &t).await.unwrap().is_empty());
    line.set_status(onsale, "paused").await.unwrap();
    assert!(line.admit(onsale, 5, 10, T0, &t).await.unwrap().is_empty());
    line.set_status(onsale, "live").await.unwrap();
    line.set_exhausted(onsale, true).await.unwrap();
    assert!(line.admit(onsale, 5, 10, T0, &t).await.unwrap().is_empty());
    assert!(view(&line, onsale).await.exhausted);
    line.set_exhausted(onsale, false).await.unwrap();
    let next = line.admit(onsale, 1, 10, T0, &t).await.unwrap();
    assert_eq!(users(&next), ["u4"]);
    assert_eq!(next[0].ordinal, 4);
    assert!(next[0].present);
    assert_eq!(next[0].place.admitted_until_ms, Some(T0 + 600_000));
    let v = view(&line, onsale).await;
    assert_eq!(
        (v.cursor, v.admitted_total, v.active, v.waiting),
        (4, 4, 4, 2)
    );
    assert_eq!(
        (v.ahead(4), v.ahead(5), v.ahead(6)),
        (None, Some(0), Some(1))
    );
    // An admitted buyer joining again gets the admission back.
    match line.join(onsale, "u1", None).await.unwrap() {
        Joined::Attached(p) => assert_eq!(p.admitted_until_ms, Some(T0 + 600_000)),
        other => panic!("{other:?}"),
    }
}

async fn a_place_is_kept_for_the_grace_period_and_lost_after_it(line: Line) {
    let onsale = live(&line).await;
    let (p1, _) = placed(line.join(onsale, "u1", None).await.unwrap());
    let (p2, _) = placed(line.join(onsale, "u2", None).await.unwrap());
    line.join(onsale, "u3", None).await.unwrap();
    let grace = timing().grace;
    // u1 has two tabs; closing one keeps it present.
    line.join(onsale, "u1", None).await.unwrap();
    line.detach(onsale, "u1", &p1, T0, grace).await.unwrap();
    line.detach(onsale, "u2", &p2, T0, grace).await.unwrap();
    assert_eq!(
        line.expire(onsale, T0 + 300_000, 100).await.unwrap(),
        [("u2".to_owned(), Ending::GraceExpired)]
    );
    let v = view(&line, onsale).await;
    assert_eq!(
        v.gone,
        [2],
        "u2 was away past the grace period; u1 never was"
    );
    assert_eq!(v.ahead(3), Some(1));
    assert!(line.place(onsale, "u2").await.unwrap().is_none());
    assert!(line.place(onsale, "u1").await.unwrap().is_some());
}

async fn coming_back_within_the_grace_period_keeps_the_place(line: Line) {
    let onsale = live(&line).await;
    let (p1, _) = placed(line.join(onsale, "u1", None).await.unwrap());
    let grace = timing().grace;
    line.detach(onsale, "u1", &p1, T0, grace).await.unwrap();
    // Not yet expired one millisecond before the deadline.
    assert!(
        line.expire(onsale, T0 + 119_999, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let back = line.join(onsale, "u1", None).await.unwrap();
    assert_eq!(placed(back), (p1.clone(), 1));
    assert!(
        line.expire(onsale, T0 + 999_999, 100)
            .await
            .unwrap()
            .is_empty()
    );
    // A stale detach naming an old place changes nothing for a newer one.
    line.leave(onsale, "u1").await.unwrap();
    let (fresh, seq) = placed(line.join(onsale, "u1", None).await.unwrap());
    assert_eq!(seq, 2, "a place given up queues at the back");
    line.detach(onsale, "u1", &p1, T0, grace).await.unwrap();
    assert!(
        line.expire(onsale, T0 + 999_999, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(line.place(onsale, "u1").await.unwrap().unwrap().id, fresh);
}

async fn grace_expiry_reports_every_buyer_once(line: Line) {
    let onsale = live(&line).await;
    let (p1, _) = placed(line.join(onsale, "u1", None).await.unwrap());
    line.detach(onsale, "u1", &p1, T0, timing().grace)
        .await
        .unwrap();
    let ended = line.expire(onsale, T0 + 120_000, 100).await.unwrap();
    assert_eq!(ended, [("u1".to_owned(), Ending::GraceExpired)]);
    assert!(
        line.expire(onsale, T0 + 120_000, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn slots_come_back_on_no_show_expiry_and_finish(line: Line) {
    let onsale = live(&line).await;
    let t = timing();
    let (p1, _) = placed(line.join(onsale, "u1", None).await.unwrap());
    line.join(onsale, "u2", None).await.unwrap();
    line.join(onsale, "u3", None).await.unwrap();
    line.join(onsale, "u4", None).await.unwrap();
    // u1 is away (within grace) when admitted: it must show up within the window.
    line.detach(onsale, "u1", &p1, T0, t.grace).await.unwrap();
    let admitted = line.admit(onsale, 2, 2, T0, &t).await.unwrap();
    assert_eq!(
        admitted
            .iter()
            .map(|a| (a.user.as_str(), a.present))
            .collect::<Vec<_>>(),
        [("u1", false), ("u2", true)]
    );
    assert!(
        line.admit(onsale, 2, 2, T0, &t).await.unwrap().is_empty(),
        "cap reached"
    );
    let ended = line.expire(onsale, T0 + 30_000, 100).await.unwrap();
    assert_eq!(ended, [("u1".to_owned(), Ending::NoShow)]);
    assert_eq!(
        users(&line.admit(onsale, 2, 2, T0 + 30_000, &t).await.unwrap()),
        ["u3"]
    );
    // u2 checks out: its slot comes back at once.
    assert!(line.finish(onsale, "u2").await.unwrap());
    assert!(!line.finish(onsale, "u2").await.unwrap());
    assert!(
        !line.finish(onsale, "u4").await.unwrap(),
        "u4 is not admitted"
    );
    assert_eq!(
        users(&line.admit(onsale, 2, 2, T0 + 30_000, &t).await.unwrap()),
        ["u4"]
    );
    // Admissions end after their time.
    let ended = line
        .expire(onsale, T0 + 30_000 + 600_000, 100)
        .await
        .unwrap();
    assert_eq!(
        ended,
        [
            ("u3".to_owned(), Ending::AdmissionEnded),
            ("u4".to_owned(), Ending::AdmissionEnded)
        ]
    );
    assert_eq!(view(&line, onsale).await.active, 0);
}

async fn an_admitted_buyer_who_comes_back_in_time_keeps_the_admission(line: Line) {
    let onsale = live(&line).await;
    let t = timing();
    let (p1, _) = placed(line.join(onsale, "u1", None).await.unwrap());
    line.detach(onsale, "u1", &p1, T0, t.grace).await.unwrap();
    line.admit(onsale, 1, 5, T0, &t).await.unwrap();
    line.join(onsale, "u1", None).await.unwrap();
    assert!(
        line.expire(onsale, T0 + 60_000, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(view(&line, onsale).await.active, 1);
}

async fn concurrent_joins_and_admissions_never_lose_or_duplicate_a_place(line: Line) {
    let onsale = live(&line).await;
    let mut joins = tokio::task::JoinSet::new();
    for i in 0..400 {
        let line = line.clone();
        // 200 buyers, each joining twice at once (two tabs).
        joins.spawn(async move { line.join(onsale, &format!("u{}", i % 200), None).await });
    }
    let mut admits = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let line = line.clone();
        admits.spawn(async move { line.admit(onsale, 7, 1_000, T0, &timing()).await });
    }
    let mut seqs = HashSet::new();
    let mut new = 0;
    while let Some(joined) = joins.join_next().await {
        match joined.unwrap().unwrap() {
            Joined::New(p) => {
                new += 1;
                assert!(seqs.insert(p.seq), "sequence {} handed out twice", p.seq);
            }
            Joined::Attached(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(new, 200, "one place per buyer");
    let mut admitted = Vec::new();
    while let Some(batch) = admits.join_next().await {
        admitted.extend(batch.unwrap().unwrap());
    }
    let rest = line
        .admit(onsale, 1_000, 1_000, T0, &timing())
        .await
        .unwrap();
    admitted.extend(rest);
    let mut order: Vec<u64> = admitted.iter().map(|a| a.place.seq).collect();
    order.sort_unstable();
    assert_eq!(
        order,
        (1..=200).collect::<Vec<_>>(),
        "every place admitted exactly once"
    );
    let names: HashSet<&str> = admitted.iter().map(|a| a.user.as_str()).collect();
    assert_eq!(names.len(), 200);
}

async fn an_account_is_recorded_in_at_most_its_cap_of_queues(line: Line) {
    let account = format!("tenant/{}", Uuid::new_v4());
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    assert!(line.enter(&account, a, 2, T0).await.unwrap());
    assert!(line.enter(&account, b, 2, T0 + 1).await.unwrap());
    assert!(
        line.enter(&account, a, 2, T0 + 2).await.unwrap(),
        "again in the same queue"
    );
    assert!(!line.enter(&account, c, 2, T0 + 3).await.unwrap());
    assert_eq!(line.queues(&account).await.unwrap(), [(a, T0), (b, T0 + 1)]);
    line.exit(&account, a).await.unwrap();
    assert!(line.enter(&account, c, 2, T0 + 4).await.unwrap());
    assert_eq!(
        line.queues(&account).await.unwrap(),
        [(b, T0 + 1), (c, T0 + 4)]
    );
    // A batch answers each account in order, as a call each would.
    let other = format!("tenant/{}", Uuid::new_v4());
    assert_eq!(
        line.enter_many(&[&account, &other, &account, &other], a, 2, T0 + 5)
            .await
            .unwrap(),
        [false, true, false, true],
        "the first account is at its cap; the other is new, then in already"
    );
    assert_eq!(line.queues(&other).await.unwrap(), [(a, T0 + 5)]);
    assert_eq!(
        line.queues(&account).await.unwrap(),
        [(b, T0 + 1), (c, T0 + 4)],
        "refused, and left as it was"
    );
}

async fn a_staged_purchase_is_handed_out_once_at_admission(line: Line) {
    let onsale = live(&line).await;
    assert!(
        !line.stage(onsale, "u1", "c:2").await.unwrap(),
        "no place, nothing staged"
    );
    line.join(onsale, "u1", None).await.unwrap();
    line.join(onsale, "u2", None).await.unwrap();
    line.join(onsale, "u3", None).await.unwrap();
    assert!(line.stage(onsale, "u1", "c:2").await.unwrap());
    assert!(
        line.stage(onsale, "u1", "c:3").await.unwrap(),
        "a later one replaces it"
    );
    assert!(line.stage(onsale, "u3", "c:1").await.unwrap());
    line.leave(onsale, "u3").await.unwrap();
    line.join(onsale, "u3", None).await.unwrap();
    let admitted = line.admit(onsale, 5, 5, T0, &timing()).await.unwrap();
    let intents: Vec<(&str, Option<&str>)> = admitted
        .iter()
        .map(|a| (a.user.as_str(), a.intent.as_deref()))
        .collect();
    assert_eq!(
        intents,
        [("u1", Some("c:3")), ("u2", None), ("u3", None)],
        "a place given up takes its staged purchase with it"
    );
    assert!(
        !line.stage(onsale, "u1", "c:1").await.unwrap(),
        "admitted: nothing to stage"
    );
}

/// Connections detached together are detached as one by one: a place's grace starts when its
/// last connection goes, not before; an admitted place starts none; a detach naming a place
/// that is no longer the buyer's changes nothing.
async fn connections_detached_together_are_detached_as_one_by_one(line: Line) {
    let onsale = live(&line).await;
    // u4 first, and admitted (the cap lets one through).
    let (p4, _) = placed(line.join(onsale, "u4", None).await.unwrap());
    let admitted = line.admit(onsale, 1, 1, T0, &timing()).await.unwrap();
    assert_eq!(users(&admitted), ["u4"]);
    let (p1, _) = placed(line.join(onsale, "u1", None).await.unwrap());
    line.join(onsale, "u1", None).await.unwrap(); // a second tab
    let (p2, _) = placed(line.join(onsale, "u2", None).await.unwrap());
    let (p3, _) = placed(line.join(onsale, "u3", None).await.unwrap());
    line.join(onsale, "u3", None).await.unwrap();
    let grace = timing().grace;
    // u1's two tabs, u2's one, one of u3's two, u4's one, and a stale one naming a place
    // that is not u3's.
    let closed: Vec<(String, String)> = [
        ("u1", p1.as_str()),
        ("u2", p2.as_str()),
        ("u1", p1.as_str()),
        ("u3", p3.as_str()),
        ("u3", "p-not-its-place"),
        ("u4", p4.as_str()),
    ]
    .iter()
    .map(|(u, p)| ((*u).to_owned(), (*p).to_owned()))
    .collect();
    line.detach_many(onsale, &closed, T0, grace).await.unwrap();
    let deadline = T0 + grace.as_millis() as u64;
    let early = line.expire(onsale, deadline - 1, 100).await.unwrap();
    assert!(early.is_empty(), "{early:?}");
    // u1 and u2 lost every connection: their grace ends; u3 keeps a tab; u4 is admitted.
    let mut ended = line.expire(onsale, deadline + 1, 100).await.unwrap();
    ended.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        ended,
        [
            ("u1".to_owned(), Ending::GraceExpired),
            ("u2".to_owned(), Ending::GraceExpired)
        ]
    );
    assert!(line.place(onsale, "u3").await.unwrap().is_some());
}

/// A pre-queue larger than one part of the draw is drawn in the given order (Redis draws it in
/// parts), a place that left before the draw is a gap, and drawing again changes nothing.
async fn a_large_pre_queue_is_drawn_in_order_and_a_repeated_draw_changes_nothing(line: Line) {
    let onsale = Uuid::new_v4();
    line.set_status(onsale, "pre_queue").await.unwrap();
    let users: Vec<String> = (1..=4_500).map(|i| format!("u{i}")).collect();
    for chunk in users.chunks(500) {
        let joins: Vec<(&str, Option<&str>)> = chunk.iter().map(|u| (u.as_str(), None)).collect();
        line.join_many(onsale, &joins).await.unwrap();
    }
    let mut order = line.close_pre_queue(onsale).await.unwrap();
    assert_eq!(order.len(), 4_500);
    order.reverse();
    // Who holds which place, read back.
    let before = line.places(onsale, &users).await.unwrap();
    let by_id: std::collections::HashMap<String, String> = users
        .iter()
        .zip(&before)
        .map(|(u, p)| (p.as_ref().unwrap().id.clone(), u.clone()))
        .collect();
    let leaver = by_id[&order[2_500]].clone();
    assert!(line.leave(onsale, &leaver).await.unwrap());
    line.draw(onsale, &order).await.unwrap();
    let check = |places: Vec<Option<Place>>| {
        for (user, place) in users.iter().zip(places) {
            if *user == leaver {
                assert_eq!(place, None);
                continue;
            }
            let place = place.unwrap();
            let rank = order.iter().position(|id| *id == place.id).unwrap() as u64;
            assert_eq!(place.seq, rank + 1, "{user}");
        }
    };
    check(line.places(onsale, &users).await.unwrap());
    // The leaver's sequence (2,501, past the view's exact window, so counted from the next
    // block boundary on) is a gap: 3,000 sequences before 3,001, one of them gone.
    let whole = view(&line, onsale).await;
    assert_eq!(
        (whole.ahead(3_001), whole.ahead(2_500)),
        (Some(2_999), Some(2_499))
    );
    assert_eq!(whole.waiting, 4_499);
    // Drawn again (a controller that took over): nothing moves.
    line.draw(onsale, &order).await.unwrap();
    check(line.places(onsale, &users).await.unwrap());
    let again = view(&line, onsale).await;
    assert_eq!((again.ahead(3_001), again.waiting), (Some(2_999), 4_499));
    let admitted = line.admit(onsale, 3, 10, T0, &timing()).await.unwrap();
    let first: Vec<String> = order[..3].iter().map(|id| by_id[id].clone()).collect();
    assert_eq!(users_of(&admitted), first);
}

fn users_of(admitted: &[Admitted]) -> Vec<String> {
    admitted.iter().map(|a| a.user.clone()).collect()
}

/// The view of one place (what a buyer attaching again is told from) says of that place what
/// the whole view says: ahead of it and whether it is gone, within the exact window and
/// beyond it, on both sides of block boundaries, with gaps everywhere.
async fn the_view_of_one_place_agrees_with_the_whole_view(line: Line) {
    let onsale = live(&line).await;
    let users: Vec<String> = (1..=5_600).map(|i| format!("u{i}")).collect();
    for chunk in users.chunks(400) {
        let joins: Vec<(&str, Option<&str>)> = chunk.iter().map(|u| (u.as_str(), None)).collect();
        line.join_many(onsale, &joins).await.unwrap();
    }
    // Gaps: every 7th place leaves, and a run of 300 just past the first boundary after the
    // window.
    for (i, user) in users.iter().enumerate() {
        let seq = i as u64 + 1;
        if seq.is_multiple_of(7) || (3_000..3_300).contains(&seq) {
            line.leave(onsale, user).await.unwrap();
        }
    }
    // The cursor moves on past some gaps: 120 admitted.
    line.admit(onsale, 120, 10_000, T0, &timing())
        .await
        .unwrap();
    let whole = view(&line, onsale).await;
    assert!(whole.cursor > 100, "{}", whole.cursor);
    let seqs = (1..=5_600u64)
        .step_by(37)
        .chain([
            whole.cursor,
            whole.cursor + 1,
            whole.cursor + 2_000,
            whole.cursor + 2_001,
        ])
        .chain([
            2_999, 3_000, 3_001, 3_299, 3_300, 3_999, 4_000, 4_001, 5_600,
        ]);
    for seq in seqs {
        let one = line.view_at(onsale, seq).await.unwrap();
        assert_eq!(
            (one.ahead(seq), one.is_gone(seq)),
            (whole.ahead(seq), whole.is_gone(seq)),
            "sequence {seq} (cursor {})",
            whole.cursor
        );
        assert_eq!(
            (
                one.status.as_str(),
                one.cursor,
                one.waiting,
                one.exhausted,
                one.drawn
            ),
            (
                whole.status.as_str(),
                whole.cursor,
                whole.waiting,
                whole.exhausted,
                whole.drawn
            )
        );
    }
}

async fn a_batch_of_joins_is_answered_in_order_like_single_joins(line: Line) {
    let onsale = live(&line).await;
    let (p1, _) = placed(line.join(onsale, "u1", None).await.unwrap());
    let joined = line
        .join_many(
            onsale,
            &[
                ("u2", None),
                ("u1", None),
                ("u2", None),
                ("u3", Some(p1.as_str())),
            ],
        )
        .await
        .unwrap();
    let Joined::New(u2) = &joined[0] else {
        panic!("{joined:?}")
    };
    assert_eq!(u2.seq, 2);
    assert!(matches!(&joined[1], Joined::Attached(p) if p.id == p1));
    assert_eq!(
        &joined[2],
        &Joined::Attached(u2.clone()),
        "twice in one batch: one place"
    );
    assert!(matches!(&joined[3], Joined::New(p) if p.seq == 3));
    // u2's two joins in the batch are two attachments: it stays present until both go.
    let grace = timing().grace;
    line.detach(onsale, "u2", &u2.id, T0, grace).await.unwrap();
    assert!(
        line.expire(onsale, T0 + 999_999, 100)
            .await
            .unwrap()
            .is_empty(),
        "a tab of u2 is still open"
    );
    line.detach(onsale, "u2", &u2.id, T0, grace).await.unwrap();
    assert_eq!(
        line.expire(onsale, T0 + 999_999, 100).await.unwrap(),
        [("u2".to_owned(), Ending::GraceExpired)]
    );
    let (p4, seq) = placed(line.join(onsale, "u4", None).await.unwrap());
    assert_eq!(seq, 4, "the line's counter moved past the batch");
    assert_eq!(
        line.place(onsale, "u4").await.unwrap().map(|p| p.id),
        Some(p4)
    );
    line.set_status(onsale, "closed").await.unwrap();
    let refused = line
        .join_many(onsale, &[("u5", None), ("u1", None)])
        .await
        .unwrap();
    assert_eq!(
        refused[0],
        Joined::Refused {
            status: "closed".into()
        }
    );
    assert!(
        matches!(&refused[1], Joined::Attached(_)),
        "an existing place still attaches"
    );
}

async fn a_dead_nodes_connections_are_detached_and_its_buyers_grace_starts(line: Line) {
    let onsale = live(&line).await;
    let (a, b) = (line.on_node("node-a"), line.on_node("node-b"));
    let ttl = Duration::from_secs(3);
    let grace = timing().grace;
    a.heartbeat(T0, ttl).await.unwrap();
    b.heartbeat(T0, ttl).await.unwrap();
    // u1 has a tab on each node, u2 and u3 on node a only.
    a.join(onsale, "u1", None).await.unwrap();
    b.join(onsale, "u1", None).await.unwrap();
    a.join(onsale, "u2", None).await.unwrap();
    a.join(onsale, "u3", None).await.unwrap();
    a.set_status(onsale, "live").await.unwrap();
    // Node b lives on; node a stops beating.
    assert!(b.heartbeat(T0 + 2_000, ttl).await.unwrap(), "b was alive");
    assert!(line.dead_nodes(T0 + 2_000).await.unwrap().is_empty());
    assert_eq!(
        line.dead_nodes(T0 + 4_000).await.unwrap(),
        ["node-a".to_owned()]
    );
    let lost = line
        .detach_node(onsale, "node-a", T0 + 4_000, grace)
        .await
        .unwrap();
    assert_eq!(lost, 2, "u2 and u3 lost their last connection; u1 kept b's");
    assert_eq!(
        line.detach_node(onsale, "node-a", T0 + 5_000, grace)
            .await
            .unwrap(),
        0,
        "once only"
    );
    let mut ended = line
        .expire(onsale, T0 + 4_000 + 120_000, 100)
        .await
        .unwrap();
    ended.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        ended,
        [
            ("u2".to_owned(), Ending::GraceExpired),
            ("u3".to_owned(), Ending::GraceExpired)
        ]
    );
    assert!(line.place(onsale, "u1").await.unwrap().is_some());
    // A node silent past its heartbeat hears so when it beats again.
    assert!(!a.heartbeat(T0 + 6_000, ttl).await.unwrap());
}

macro_rules! conformance {
    ($line:ident) => {
        mod $line {
            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test]
                    async fn $name() {
                        super::$name(super::$line().await).await;
                    }
                };
            }

            case!(nobody_joins_before_the_pre_queue_or_after_the_close);
            case!(one_place_per_buyer_and_every_join_after_the_first_attaches);
            case!(the_pre_queue_is_drawn_in_the_given_order_ahead_of_later_joiners);
            case!(a_pre_queue_place_that_left_before_the_draw_leaves_a_gap);
            case!(a_line_set_live_directly_keeps_its_sequences_through_the_draw);
            case!(admission_follows_the_line_within_the_cap_and_only_while_live);
            case!(a_place_is_kept_for_the_grace_period_and_lost_after_it);
            case!(coming_back_within_the_grace_period_keeps_the_place);
            case!(grace_expiry_reports_every_buyer_once);
            case!(slots_come_back_on_no_show_expiry_and_finish);
            case!(an_admitted_buyer_who_comes_back_in_time_keeps_the_admission);
            case!(concurrent_joins_and_admissions_never_lose_or_duplicate_a_place);
            case!(an_account_is_recorded_in_at_most_its_cap_of_queues);
            case!(a_staged_purchase_is_handed_out_once_at_admission);
            case!(a_batch_of_joins_is_answered_in_order_like_single_joins);
            case!(the_view_of_one_place_agrees_with_the_whole_view);
            case!(a_large_pre_queue_is_drawn_in_order_and_a_repeated_draw_changes_nothing);
            case!(connections_detached_together_are_detached_as_one_by_one);
            case!(a_dead_nodes_connections_are_detached_and_its_buyers_grace_starts);
        }
    };
}

conformance!(memory);
conformance!(redis);

/// Redis lost its scripts (a restart, `SCRIPT FLUSH`): a batch of accounts still enters, the
/// pipeline sent again after the scripts are loaded, and an account in already stays once.
#[tokio::test]
async fn a_batch_of_accounts_enters_after_redis_lost_its_scripts() {
    use fred::prelude::LuaInterface as _;
    let line = redis().await;
    let onsale = Uuid::new_v4();
    let (a, b) = (
        format!("tenant/{}", Uuid::new_v4()),
        format!("tenant/{}", Uuid::new_v4()),
    );
    assert_eq!(line.enter_many(&[&a], onsale, 2, T0).await.unwrap(), [true]);
    let redis = common::redis_client().await;
    redis.script_flush(false).await.unwrap();
    assert_eq!(
        line.enter_many(&[&a, &b], onsale, 2, T0 + 1).await.unwrap(),
        [true, true]
    );
    assert_eq!(
        line.queues(&a).await.unwrap(),
        [(onsale, T0)],
        "entered once"
    );
    assert_eq!(line.queues(&b).await.unwrap(), [(onsale, T0 + 1)]);
}

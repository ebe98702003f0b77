//! The inventory's rules, decided on a small event.

use super::*;
use crate::admission::AdmissionPass;
use marquee_protocol::ErrorCode;
use marquee_protocol::booking::SeatIndex;
use marquee_protocol::booking::{Command, Outcome, SeatState};
use std::collections::{BinaryHeap, HashMap};
use uuid::Uuid;

pub(crate) const NOW: i64 = 1_000_000;

/// Two rows of ten seats in one category, a GA type with quota 5, one live onsale.
pub(crate) fn small_event() -> Inventory {
    let category = Uuid::from_u128(1);
    let seated = Uuid::from_u128(2);
    let ga = Uuid::from_u128(3);
    let seats: Vec<SeatInfo> = (0..20)
        .map(|i| SeatInfo {
            seat_id: Uuid::from_u128(1000 + i),
            category: 0,
        })
        .collect();
    let mut layout: Vec<(String, i32, SeatIndex, f64, f64)> = (0..20u32)
        .map(|i| {
            let row = if i < 10 { "A" } else { "B" };
            (
                row.to_owned(),
                (i % 10) as i32 + 1,
                i,
                f64::from(i % 10),
                f64::from(i / 10) + 1.0,
            )
        })
        .collect();
    let rows = Inventory::build_rows(&seats, &mut layout);
    let mut ticket_types = HashMap::new();
    ticket_types.insert(
        seated,
        TicketTypeInfo {
            price_minor: 5000,
            currency: "EUR".into(),
            min_per_order: 1,
            max_per_order: 6,
            ga: None,
        },
    );
    ticket_types.insert(
        ga,
        TicketTypeInfo {
            price_minor: 2000,
            currency: "EUR".into(),
            min_per_order: 1,
            max_per_order: 4,
            ga: Some(GaCounts {
                quota: 5,
                held: 0,
                sold: 0,
            }),
        },
    );
    Inventory {
        tenant: Uuid::from_u128(9),
        event: Uuid::from_u128(10),
        version: 0,
        focal: (4.5, 0.0),
        state: vec![SeatState::Free; seats.len()],
        seats,
        rows,
        categories: vec![CategoryInfo {
            id: category,
            ticket_type: Some(seated),
        }],
        ticket_types,
        onsales: vec![OnsaleInfo {
            id: Uuid::from_u128(11),
            live: true,
            starts_at: 0,
            ends_at: None,
            hold_ms: 600_000,
            per_user_limit: 8,
            requires_admission: false,
        }],
        holds: HashMap::new(),
        ended: HashMap::new(),
        per_user: HashMap::new(),
        expiry: BinaryHeap::new(),
        pending: HashMap::new(),
        order_expiry: BinaryHeap::new(),
        orders: HashMap::new(),
    }
}

fn run(inv: &mut Inventory, user: &str, command: &Command) -> Outcome {
    run_admitted(inv, user, command, None)
}

fn run_admitted(
    inv: &mut Inventory,
    user: &str,
    command: &Command,
    admission: Option<&AdmissionPass>,
) -> Outcome {
    let mut delta = DeltaBuilder::default();
    inv.apply(
        &Request {
            user,
            command,
            admission,
        },
        NOW,
        &mut delta,
    )
    .0
}

fn seats(seats: &[u32]) -> Command {
    Command::HoldSeats {
        event: Uuid::from_u128(10).to_string(),
        seats: seats.to_vec(),
    }
}

fn code(outcome: &Outcome) -> ErrorCode {
    match outcome {
        Outcome::Rejected { code, .. } => *code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn a_seat_held_once_cannot_be_held_again_and_the_error_offers_the_nearest_block() {
    let mut inv = small_event();
    assert!(matches!(
        run(&mut inv, "u1", &seats(&[4, 5])),
        Outcome::Held { .. }
    ));
    let second = run(&mut inv, "u2", &seats(&[5, 6]));
    let Outcome::Rejected {
        code, alternative, ..
    } = second
    else {
        panic!("{second:?}")
    };
    assert_eq!(code, ErrorCode::SeatUnavailable);
    let alternative = alternative.expect("a free block exists");
    assert_eq!(alternative.len(), 2);
    assert!(
        alternative
            .iter()
            .all(|s| inv.state[*s as usize] == SeatState::Free)
    );
    assert_eq!(inv.per_user.get("u2"), None, "a rejection changes nothing");
}

#[test]
fn bad_seat_requests_get_exact_codes_and_change_nothing() {
    let mut inv = small_event();
    assert_eq!(
        code(&run(&mut inv, "u", &seats(&[20]))),
        ErrorCode::UnknownSeat
    );
    assert_eq!(
        code(&run(&mut inv, "u", &seats(&[]))),
        ErrorCode::InvalidQuantity
    );
    assert_eq!(
        code(&run(&mut inv, "u", &seats(&[1, 1]))),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(&run(&mut inv, "u", &seats(&[0, 1, 2, 3, 4, 5, 6]))),
        ErrorCode::InvalidQuantity,
        "over the ticket type's max per order"
    );
    assert!(inv.state.iter().all(|s| *s == SeatState::Free));
    assert!(inv.holds.is_empty());
}

#[test]
fn the_per_user_limit_counts_seats_and_tickets_together() {
    let mut inv = small_event();
    inv.onsales[0].per_user_limit = 4;
    assert!(matches!(
        run(&mut inv, "u", &seats(&[0, 1, 2])),
        Outcome::Held { .. }
    ));
    let ga = Command::HoldGa {
        event: inv.event.to_string(),
        ticket_type: Uuid::from_u128(3).to_string(),
        quantity: 2,
    };
    assert_eq!(code(&run(&mut inv, "u", &ga)), ErrorCode::LimitExceeded);
}

#[test]
fn general_admission_never_goes_past_its_quota() {
    let mut inv = small_event();
    let ga = |q| Command::HoldGa {
        event: Uuid::from_u128(10).to_string(),
        ticket_type: Uuid::from_u128(3).to_string(),
        quantity: q,
    };
    assert!(matches!(run(&mut inv, "a", &ga(3)), Outcome::Held { .. }));
    assert_eq!(code(&run(&mut inv, "b", &ga(3))), ErrorCode::SoldOut);
    assert!(matches!(run(&mut inv, "b", &ga(2)), Outcome::Held { .. }));
    assert_eq!(code(&run(&mut inv, "c", &ga(1))), ErrorCode::SoldOut);
    assert_eq!(
        code(&run(&mut inv, "c", &ga(0))),
        ErrorCode::InvalidQuantity
    );
    assert_eq!(
        code(&run(&mut inv, "c", &ga(5))),
        ErrorCode::InvalidQuantity
    );
}

#[test]
fn release_and_expiry_free_the_seats_and_only_the_owner_may_release() {
    let mut inv = small_event();
    let Outcome::Held { hold, .. } = run(&mut inv, "u", &seats(&[0, 1])) else {
        panic!()
    };
    let release = Command::Release {
        event: inv.event.to_string(),
        hold: hold.clone(),
    };
    assert_eq!(
        code(&run(&mut inv, "other", &release.clone())),
        ErrorCode::HoldNotFound
    );
    assert!(matches!(
        run(&mut inv, "u", &release.clone()),
        Outcome::Released { .. }
    ));
    assert_eq!(inv.state[0], SeatState::Free);
    assert_eq!(code(&run(&mut inv, "u", &release)), ErrorCode::HoldExpired);

    assert!(matches!(
        run(&mut inv, "u", &seats(&[3])),
        Outcome::Held { .. }
    ));
    let mut delta = DeltaBuilder::default();
    assert!(inv.expire_due(NOW + 599_999, 100, &mut delta).is_empty());
    let expired = inv.expire_due(NOW + 600_000, 100, &mut delta);
    assert_eq!(expired.len(), 1);
    assert_eq!(inv.state[3], SeatState::Free);
    assert_eq!(delta.build(1, &inv).free, vec![3]);
    assert_eq!(inv.per_user.get("u"), Some(&0));
}

#[test]
fn a_hold_past_its_expiry_cannot_be_checked_out_even_before_the_sweep() {
    let mut inv = small_event();
    let Outcome::Held { hold, .. } = run(&mut inv, "u", &seats(&[2])) else {
        panic!()
    };
    let checkout = Command::Checkout {
        event: inv.event.to_string(),
        hold,
    };
    let mut delta = DeltaBuilder::default();
    let (outcome, change) = inv.apply(
        &Request {
            user: "u",
            command: &checkout,
            admission: None,
        },
        NOW + 600_000,
        &mut delta,
    );
    assert_eq!(code(&outcome), ErrorCode::HoldExpired);
    assert!(change.is_none());
    assert_eq!(
        inv.state[2],
        SeatState::Held,
        "the sweeper frees it, not the checkout"
    );
}

#[test]
fn checkout_sells_the_held_seats_and_prices_the_order() {
    let mut inv = small_event();
    let Outcome::Held { hold, .. } = run(&mut inv, "u", &seats(&[7, 8])) else {
        panic!()
    };
    let checkout = Command::Checkout {
        event: inv.event.to_string(),
        hold,
    };
    let Outcome::CheckedOut {
        total_minor,
        currency,
        ..
    } = run(&mut inv, "u", &checkout)
    else {
        panic!()
    };
    assert_eq!((total_minor, currency.as_str()), (10_000, "EUR"));
    assert_eq!(inv.state[7], SeatState::Sold);
    assert_eq!(
        inv.per_user.get("u"),
        Some(&2),
        "an order still counts toward the limit"
    );
}

#[test]
fn without_an_open_onsale_or_an_admission_nothing_is_held() {
    let mut inv = small_event();
    inv.onsales[0].requires_admission = true;
    assert_eq!(
        code(&run(&mut inv, "u", &seats(&[0]))),
        ErrorCode::AdmissionRequired
    );
    let pass = AdmissionPass {
        user: "u".into(),
        tenant: inv.tenant,
        onsale: inv.onsales[0].id,
    };
    // Another buyer's admission, another tenant's, another onsale's: refused.
    for wrong in [
        AdmissionPass {
            user: "v".into(),
            ..pass.clone()
        },
        AdmissionPass {
            tenant: Uuid::from_u128(999),
            ..pass.clone()
        },
        AdmissionPass {
            onsale: Uuid::from_u128(999),
            ..pass.clone()
        },
    ] {
        assert_eq!(
            code(&run_admitted(&mut inv, "u", &seats(&[0]), Some(&wrong))),
            ErrorCode::AdmissionRequired,
            "{wrong:?}"
        );
    }
    assert!(inv.holds.is_empty(), "nothing was held");
    assert!(matches!(
        run_admitted(&mut inv, "u", &seats(&[0]), Some(&pass)),
        Outcome::Held { .. }
    ));
    inv.onsales[0].live = false;
    assert_eq!(
        code(&run(&mut inv, "u", &seats(&[0]))),
        ErrorCode::OnsaleClosed
    );
}

#[test]
fn best_available_holds_an_adjacent_block_near_the_focal_point() {
    let mut inv = small_event();
    let command = Command::HoldBestAvailable {
        event: inv.event.to_string(),
        category: Uuid::from_u128(1).to_string(),
        quantity: 2,
    };
    let Outcome::Held { seats, .. } = run(&mut inv, "u", &command) else {
        panic!()
    };
    assert_eq!(seats, vec![4, 5]);
}

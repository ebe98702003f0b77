//! The verifiable pre-queue shuffle.
//!
//! Everyone who joins an onsale's queue before it starts gets the same chance, whatever the
//! moment they joined. When the pre-queue opens, Marquee draws a secret 32-byte seed and
//! publishes its SHA-256 ([`commitment`]); at the start it shuffles the pre-queue and reveals
//! the seed with the order. The order is the entrants sorted by
//! `HMAC-SHA256(key = seed, message = entrant id)` (ties, which practically never happen, by
//! the id itself): a keyed pseudorandom permutation nobody could predict before the start, and
//! that anyone can recompute after it. The commitment published earlier proves the seed was
//! not picked afterwards to favour somebody.
//!
//! [`verify`] checks a [`PublishedOrder`]; `marquee verify-shuffle FILE` runs it on a file.
//! `docs/waiting-room.md` explains how to check an order with nothing but a SHA-256/HMAC
//! implementation.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;

/// A shuffle seed.
pub type Seed = [u8; 32];

/// The public commitment to a seed: its SHA-256, in lowercase hex.
pub fn commitment(seed: &Seed) -> String {
    hex::encode(Sha256::digest(seed))
}

/// The sort key of an entrant under a seed: `HMAC-SHA256(seed, entrant)`.
pub(crate) fn sort_key(seed: &Seed, entrant: &str) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(seed).expect("HMAC takes a key of any length");
    mac.update(entrant.as_bytes());
    mac.finalize().into_bytes().into()
}

/// The entrants in their shuffled order.
pub fn shuffle<S: AsRef<str>>(seed: &Seed, entrants: &[S]) -> Vec<String> {
    let mut keyed: Vec<([u8; 32], &str)> = entrants
        .iter()
        .map(|e| (sort_key(seed, e.as_ref()), e.as_ref()))
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, e)| e.to_owned()).collect()
}

/// What is published at an onsale's start: the commitment made when the pre-queue opened, the
/// seed, and the pre-queue in the order it is admitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedOrder {
    /// The onsale.
    pub onsale: String,
    /// SHA-256 of the seed, hex, as published when the pre-queue opened.
    pub seed_sha256: String,
    /// The seed, 64 hex digits.
    pub seed: String,
    /// The pre-queue's entrant ids, first admitted first.
    pub order: Vec<String>,
}

/// Why a published order does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShuffleError {
    /// The seed is not 64 hex digits.
    #[error("the seed is not 32 bytes of hex")]
    BadSeed,
    /// The revealed seed is not the one committed to.
    #[error("SHA-256 of the seed is {actual}, but {committed} was published")]
    SeedMismatch {
        /// What was published.
        committed: String,
        /// SHA-256 of the revealed seed.
        actual: String,
    },
    /// An entrant appears twice.
    #[error("{0} appears more than once")]
    Duplicate(String),
    /// The order is not the seed's.
    #[error("position {position}: the seed puts {expected} there, the published order {published}")]
    OrderMismatch {
        /// First position that differs (0-based).
        position: usize,
        /// Who the seed puts there.
        expected: String,
        /// Who was published there.
        published: String,
    },
}

/// Checks that `published.order` is exactly the seed's order of its entrants, and that the
/// seed is the one committed to.
pub fn verify(published: &PublishedOrder) -> Result<(), ShuffleError> {
    let seed: Seed = hex::decode(published.seed.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(ShuffleError::BadSeed)?;
    let actual = commitment(&seed);
    if !actual.eq_ignore_ascii_case(published.seed_sha256.trim()) {
        return Err(ShuffleError::SeedMismatch {
            committed: published.seed_sha256.clone(),
            actual,
        });
    }
    let mut seen = HashSet::new();
    for entrant in &published.order {
        if !seen.insert(entrant.as_str()) {
            return Err(ShuffleError::Duplicate(entrant.clone()));
        }
    }
    let expected = shuffle(&seed, &published.order);
    match expected
        .iter()
        .zip(&published.order)
        .position(|(e, p)| e != p)
    {
        None => Ok(()),
        Some(position) => Err(ShuffleError::OrderMismatch {
            position,
            expected: expected[position].clone(),
            published: published.order[position].clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seed() -> Seed {
        std::array::from_fn(|i| i as u8)
    }

    fn published(seed: &Seed, entrants: &[String]) -> PublishedOrder {
        PublishedOrder {
            onsale: "onsale-1".into(),
            seed_sha256: commitment(seed),
            seed: hex::encode(seed),
            order: shuffle(seed, entrants),
        }
    }

    #[test]
    fn the_order_matches_an_independent_implementation() {
        // Computed with Python's standard library (hashlib, hmac), not with this code:
        //   sorted(ids, key=lambda e: (hmac.new(seed, e.encode(), sha256).digest(), e))
        // for seed = bytes(range(32)): a verifier in any language gets the same order.
        let entrants: Vec<String> = (0..8).map(|i| format!("place-{i}")).collect();
        assert_eq!(
            commitment(&seed()),
            "630dcd2966c4336691125448bbb25b4ff412a49c732db2c8abc1b8581bd710dd"
        );
        assert_eq!(
            shuffle(&seed(), &entrants),
            [
                "place-1", "place-5", "place-3", "place-0", "place-4", "place-7", "place-2",
                "place-6"
            ]
        );
    }

    #[test]
    fn a_wrong_seed_a_repeat_or_a_moved_entrant_is_caught() {
        let entrants: Vec<String> = (0..50).map(|i| format!("p{i}")).collect();
        let good = published(&seed(), &entrants);
        assert_eq!(verify(&good), Ok(()));

        let mut other_seed = good.clone();
        other_seed.seed = hex::encode([7u8; 32]);
        assert!(matches!(
            verify(&other_seed),
            Err(ShuffleError::SeedMismatch { .. })
        ));

        let mut short = good.clone();
        short.seed = "abcd".into();
        assert_eq!(verify(&short), Err(ShuffleError::BadSeed));

        let mut repeated = good.clone();
        repeated.order[3] = repeated.order[2].clone();
        assert_eq!(
            verify(&repeated),
            Err(ShuffleError::Duplicate(good.order[2].clone()))
        );

        let mut favoured = good.clone();
        favoured.order.swap(0, 20);
        assert!(matches!(
            verify(&favoured),
            Err(ShuffleError::OrderMismatch { position: 0, .. })
        ));
    }

    proptest! {
        #[test]
        fn a_shuffle_is_a_permutation_and_verifies(
            seed in any::<[u8; 32]>(),
            entrants in prop::collection::hash_set("[a-z0-9-]{1,12}", 0..200),
        ) {
            let entrants: Vec<String> = entrants.into_iter().collect();
            let order = shuffle(&seed, &entrants);
            let mut sorted_in = entrants.clone();
            sorted_in.sort();
            let mut sorted_out = order.clone();
            sorted_out.sort();
            prop_assert_eq!(sorted_in, sorted_out);
            // The input order does not matter, only the seed.
            let mut reversed = entrants.clone();
            reversed.reverse();
            prop_assert_eq!(&shuffle(&seed, &reversed), &order);
            prop_assert_eq!(verify(&published(&seed, &entrants)), Ok(()));
        }
    }
}

//! Properties of the money arithmetic: whatever the amounts, rates and
//! tiers, the split adds up to the distributable income, parts of an allocation add
//! up to the whole, and a statement neither creates nor loses a fen.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use tongdao::billing::calendar::{Calendar, Month};
use tongdao::billing::money::{allocate, apply_bp, mean};
use tongdao::billing::terms::{ActivationRule, AgreementTerms, OperatorTerms, TierMode, TierRates};
use tongdao::settlement::reconcile::{Figures, PartnerLine, PlatformLine};
use tongdao::settlement::statement::{Inputs, OperatorInput, compute};

fn rates() -> impl Strategy<Value = TierRates> {
    (0i64..=10_000).prop_map(|p| TierRates {
        platform_bp: p,
        partner_bp: 10_000 - p,
    })
}

prop_compose! {
    fn agreement_terms()(
        t1 in 1i64..50_000_000,
        gap in 1i64..50_000_000,
        tiers in [rates(), rates(), rates()],
        marginal in any::<bool>(),
        tax_bp in 0i64..=10_000,
        discrepancy_bp in 0i64..=10_000,
    ) -> AgreementTerms {
        AgreementTerms {
            effective_from: "2026-01".parse().unwrap(),
            tier_mode: if marginal { TierMode::Marginal } else { TierMode::Whole },
            t1_fen: t1,
            t2_fen: t1 + gap,
            tiers,
            tax_bp,
            discrepancy_bp,
            payment_days: 5,
            activation_rule: ActivationRule::Full,
        }
    }
}

prop_compose! {
    fn operator_input(name: &'static str)(
        lines in prop::collection::vec((0i64..100_000, 0i64..100_000_000), 0..4),
        mt in 0i64..10_000_000,
        mo in 0i64..10_000_000,
        collection_bp in 0i64..=10_000,
        rate in 0i64..20,
        balance_mt in 0i64..5,
        balance_mo in 1i64..5,
        bad_debt in prop::option::of(0i64..=10_000),
    ) -> OperatorInput {
        OperatorInput {
            terms: OperatorTerms {
                operator: name.into(),
                effective_from: "2026-01".parse().unwrap(),
                collection_bp,
                imbalance_rate_fen: rate,
                balance_mt,
                balance_mo,
                schedule: "M+2 day 15".parse().unwrap(),
            },
            lines: lines
                .into_iter()
                .enumerate()
                .map(|(i, (count, amount_fen))| PlatformLine {
                    operator: name.into(),
                    service: format!("S{i}"),
                    fee_type: "per-message".into(),
                    count,
                    amount_fen,
                })
                .collect(),
            mt_count: mt,
            mo_count: mo,
            bad_debt_bp: bad_debt,
            calendar_name: "cn".into(),
            calendar: Calendar::default(),
            operator_paid_on: None,
            payments: Vec::new(),
        }
    }
}

/// One partner line per service on unicom (as an upload must be).
fn unicom_lines(theirs: Vec<(usize, i64, i64)>) -> Vec<PartnerLine> {
    theirs
        .into_iter()
        .map(|(i, count, amount_fen)| (i, (count, amount_fen)))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .map(|(i, (count, amount_fen))| PartnerLine {
            service: format!("S{i}"),
            operator: "unicom".into(),
            count,
            amount_fen,
            message_ids: None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// platform + partner = distributable income, in both modes, at any amount;
    /// the partner never gets more than the whole or less than nothing.
    #[test]
    fn split_always_adds_up_to_the_distributable_income_r_4_4(
        terms in agreement_terms(),
        d in -1_000_000_000_000i64..1_000_000_000_000,
    ) {
        let s = terms.split(d).unwrap();
        prop_assert_eq!(s.platform_fen + s.partner_fen, d);
        // The partner's share is its exact share rounded to the nearest fen (an
        // independent computation in i128): never more than half a fen off.
        if d > 0 {
            let (d, t1, t2) = (i128::from(d), i128::from(terms.t1_fen), i128::from(terms.t2_fen));
            let q = |i: usize| i128::from(terms.tiers[i].partner_bp);
            let exact_x10000 = match terms.tier_mode {
                TierMode::Whole => d * q(usize::from(s.tier) - 1),
                TierMode::Marginal => {
                    d.min(t1) * q(0) + (d.min(t2) - t1).max(0) * q(1) + (d - t2).max(0) * q(2)
                }
            };
            let off = (i128::from(s.partner_fen) * 10_000 - exact_x10000).abs();
            prop_assert!(off <= 5_000, "partner {} is {} / 10000 fen off", s.partner_fen, off);
            let expected_tier = if d < t1 { 1 } else if d < t2 { 2 } else { 3 };
            prop_assert_eq!(s.tier, expected_tier);
        }
        if d > 0 {
            prop_assert!((0..=d).contains(&s.partner_fen));
        } else {
            prop_assert_eq!(s.partner_fen, 0);
        }
        prop_assert!(s.tier >= 1 && s.tier <= 3);
    }

    /// largest-remainder parts add up to the whole and each is within one fen
    /// of its exact share.
    #[test]
    fn allocation_creates_and_loses_no_fen_r_4_9(
        total in -1_000_000_000_000i64..1_000_000_000_000,
        weights in prop::collection::vec(0i64..1_000_000_000, 1..8),
    ) {
        let parts = allocate(total, &weights);
        prop_assert_eq!(parts.iter().sum::<i64>(), total);
        let sum: i128 = weights.iter().map(|w| i128::from(*w)).sum();
        if sum > 0 {
            for (p, w) in parts.iter().zip(&weights) {
                let exact = i128::from(total) * i128::from(*w);
                let diff = (i128::from(*p) * sum - exact).abs();
                prop_assert!(diff < sum, "part {} of weight {} is more than a fen off", p, w);
            }
        }
    }

    /// Rounding is half away from zero and symmetric.
    #[test]
    fn rounding_is_symmetric(amount in -1_000_000_000_000i64..1_000_000_000_000, bp in 0i64..=10_000) {
        prop_assert_eq!(apply_bp("x", -amount, bp).unwrap(), -apply_bp("x", amount, bp).unwrap());
        prop_assert!(mean("x", amount, amount).unwrap() == amount);
    }

    /// in any statement every fen is accounted for: lines sum
    /// to gross, the deductions leave received, tax leaves distributable, the
    /// operators sum to the totals, the split to the distributable income, and the
    /// partner's parts per operator to the partner's share.
    #[test]
    fn a_statement_neither_creates_nor_loses_a_fen_r_4_9(
        terms in agreement_terms(),
        mobile in operator_input("mobile"),
        unicom in operator_input("unicom"),
        theirs in prop::collection::vec((0usize..4, 0i64..100_000, 0i64..100_000_000), 0..4),
    ) {
        // One partner line per service (as an upload must be).
        let lines = unicom_lines(theirs);
        let inputs = Inputs {
            partner: "p".into(),
            month: "2026-03".parse::<Month>().unwrap(),
            terms,
            operators: vec![mobile, unicom],
            figures: Some(Figures { id: 1, lines, objection: None, hold_bp: Some(5_000) }),
            case: None,
            decisions: std::collections::BTreeMap::new(),
        };
        let s = compute(&inputs).unwrap();
        let mut totals = (0i64, 0i64, 0i64, 0i64, 0i64, 0i64, 0i64);
        let mut partner_parts = 0i64;
        for o in &s.operators {
            prop_assert_eq!(o.lines.iter().map(|l| l.settled_fen).sum::<i64>(), o.gross_fen);
            prop_assert_eq!(
                o.gross_fen - o.collection_fen - o.imbalance_fen - o.bad_debt_fen,
                o.received_fen
            );
            prop_assert_eq!(o.received_fen - o.tax_fen, o.distributable_fen);
            prop_assert_eq!(o.partner_fen + o.platform_fen, o.distributable_fen);
            prop_assert!(o.partner_fen >= 0);
            partner_parts += o.partner_fen;
            totals.0 += o.gross_fen;
            totals.1 += o.collection_fen;
            totals.2 += o.imbalance_fen;
            totals.3 += o.bad_debt_fen;
            totals.4 += o.received_fen;
            totals.5 += o.tax_fen;
            totals.6 += o.distributable_fen;
        }
        let t = &s.totals;
        prop_assert_eq!(
            totals,
            (t.gross_fen, t.collection_fen, t.imbalance_fen, t.bad_debt_fen, t.received_fen, t.tax_fen, t.distributable_fen)
        );
        prop_assert_eq!(s.split.partner_fen + s.split.platform_fen, t.distributable_fen);
        prop_assert_eq!(partner_parts, s.split.partner_fen);
        prop_assert_eq!(s.due.iter().map(|d| d.amount_fen).sum::<i64>(), s.split.partner_fen);
    }

    /// Issue 10 item 2: whatever the figures (up to i64::MAX on every line), a
    /// statement is either exact — every sum checked again in i128 — or a clear
    /// overflow error; never a wrapped or saturated figure.
    #[test]
    fn item2_no_statement_figure_wraps(
        terms in agreement_terms(),
        mobile in operator_input("mobile"),
        unicom in operator_input("unicom"),
        theirs in prop::collection::vec((0usize..4, 0i64..=i64::MAX, 0i64..=i64::MAX), 1..4),
    ) {
        let lines = unicom_lines(theirs);
        let inputs = Inputs {
            partner: "p".into(),
            month: "2026-03".parse::<Month>().unwrap(),
            terms,
            operators: vec![mobile, unicom],
            // No hold bound (uploads from before it): every line goes to the mean.
            figures: Some(Figures { id: 1, lines, objection: Some("x".into()), hold_bp: None }),
            case: None,
            decisions: std::collections::BTreeMap::new(),
        };
        match compute(&inputs) {
            Err(tongdao::billing::BillingError::Overflow(o)) => {
                prop_assert!(!o.what.is_empty());
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
            Ok(s) => {
                let wide = |v: &[i64]| v.iter().map(|x| i128::from(*x)).sum::<i128>();
                for o in &s.operators {
                    let settled: Vec<i64> = o.lines.iter().map(|l| l.settled_fen).collect();
                    prop_assert_eq!(wide(&settled), i128::from(o.gross_fen));
                    prop_assert!(o.lines.iter().all(|l| l.settled_fen >= 0));
                    prop_assert_eq!(
                        i128::from(o.gross_fen) - i128::from(o.collection_fen)
                            - i128::from(o.imbalance_fen) - i128::from(o.bad_debt_fen),
                        i128::from(o.received_fen)
                    );
                }
                let gross: Vec<i64> = s.operators.iter().map(|o| o.gross_fen).collect();
                prop_assert_eq!(wide(&gross), i128::from(s.totals.gross_fen));
                prop_assert!(s.totals.gross_fen >= 0, "gross {} wrapped", s.totals.gross_fen);
            }
        }
    }
}

//! The parameter planner: margins for realistic bounds, errors naming the failing budget.

use client_core::params::COMPACT_N8192;
use hefun_tests::world::world;
use server::protocol::{plan, plan_with, ProtocolError};

#[test]
fn plans_with_positive_margins_for_calibrated_bounds() {
    let w = world();
    for bound in [1.0, 16.0, 26.0] {
        let p = plan(&w.model, bound, 40, 10.0).unwrap();
        let m = p.margins;
        assert!(
            m.security_slack >= 0.0 && m.refresh_room >= 0.0 && m.flood_room >= 0.0,
            "{m:?}"
        );
        assert!(
            m.sign_precision >= 10.0 && m.output_precision >= 10.0,
            "{m:?}"
        );
        assert_eq!(p.cfg.value_bound, bound);
        // ReLU product (2 primes), re-layout (0 or 1) and transform (1) within the four levels.
        let round = w.model.round_levels(&p.cfg);
        assert!((3..=4).contains(&round), "{round}");
        assert_eq!(m.spare_levels, 4 - round);
        assert_eq!(p.params.name(), "hefun-n16384");
    }
}

#[test]
fn errors_name_the_budget_that_fails() {
    let w = world();
    let too_large = plan(&w.model, 2f64.powi(20), 40, 10.0).unwrap_err();
    assert!(
        matches!(&too_large, ProtocolError::Budget(m) if m.starts_with("refresh mask")),
        "{too_large}"
    );
    let too_precise = plan(&w.model, 16.0, 40, 40.0).unwrap_err();
    assert!(
        matches!(&too_precise, ProtocolError::Budget(m) if m.starts_with("sign precision")),
        "{too_precise}"
    );
    // The compact preset (single-prime scales, 90-bit hand-off) cannot carry 2^-40 masks.
    let compact = plan_with(&COMPACT_N8192, &w.model, 16.0, 40, 10.0).unwrap_err();
    assert!(matches!(&compact, ProtocolError::Budget(_)), "{compact}");
}

//! OVERLOAD from the connection thresholds `-x` (upper) and `-y` (lower),
//! as IPVS sets and clears it (reference §1.1).

use lvs_state::model::RealSpec;

/// The flag after a count of `total` connections (active + inactive), given
/// whether it was set: set on reaching the upper threshold; once set,
/// cleared below the lower one, or below 3/4 of the upper one when there is
/// no lower one, or at once when there are no thresholds at all.
pub fn overloaded(was: bool, total: u32, real: &RealSpec) -> bool {
    let (upper, lower) = (real.u_threshold, real.l_threshold);
    if !was {
        return upper != 0 && total >= upper;
    }
    if lower != 0 {
        total >= lower
    } else if upper != 0 {
        total as u64 * 4 >= upper as u64 * 3
    } else {
        false
    }
}

/// Editing a server clears OVERLOAD when the new upper threshold is 0 or
/// larger than the old one.
pub fn edit_clears(old: &RealSpec, new: &RealSpec) -> bool {
    new.u_threshold == 0 || new.u_threshold > old.u_threshold
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_state::model::{Endpoint, Method};

    fn real(u_threshold: u32, l_threshold: u32) -> RealSpec {
        RealSpec {
            server: Endpoint {
                addr: [198, 18, 11, 2].into(),
                port: 80,
            },
            method: Method::Nat,
            weight: 1,
            u_threshold,
            l_threshold,
        }
    }

    #[test]
    fn reference_example_upper_two() {
        // u=2, l=0: the second connection sets it; it clears only when
        // total*4 < 6, i.e. at one connection.
        let r = real(2, 0);
        assert!(!overloaded(false, 1, &r));
        assert!(overloaded(false, 2, &r));
        assert!(overloaded(true, 2, &r));
        assert!(!overloaded(true, 1, &r));
    }

    #[test]
    fn lower_threshold_gives_hysteresis() {
        let r = real(10, 4);
        assert!(overloaded(false, 10, &r));
        assert!(overloaded(true, 5, &r));
        assert!(overloaded(true, 4, &r));
        assert!(!overloaded(true, 3, &r));
        assert!(!overloaded(false, 9, &r));
    }

    #[test]
    fn no_thresholds_clear_at_once() {
        assert!(!overloaded(true, 100, &real(0, 0)));
        assert!(!overloaded(false, 100, &real(0, 0)));
    }

    #[test]
    fn edits_clear_when_raised_or_removed() {
        assert!(edit_clears(&real(10, 0), &real(0, 0)));
        assert!(edit_clears(&real(10, 0), &real(11, 0)));
        assert!(!edit_clears(&real(10, 0), &real(10, 0)));
        assert!(!edit_clears(&real(10, 0), &real(5, 0)));
    }
}

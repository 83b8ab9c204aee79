//! Which istio-proxy releases can load what, as `match.proxy.proxyVersion` regexes: rendered
//! objects (also applied by GitOps, with no preflight) give each proxy only what its Envoy has.
//!
//! istiod matches the regex against the proxy's `ISTIO_VERSION` (e.g. `1.20.3`, `1.24.0-rc.1`);
//! a proxy without one matches no gated patch. The facts and their sources are in
//! `kubectl-mesh/data/istio-proxy/README.md`.

/// A proxy feature that appeared in some patch release of one or more minor lines and is in
/// every later minor line.
#[derive(Debug, Clone, Copy)]
pub struct Feature {
    /// What it is, for messages.
    pub name: &'static str,
    /// Per Istio 1.x minor line where it appeared, ascending: `(minor, first patch with it)`.
    /// Minor lines between two entries lack it; every minor after the last has it.
    pub firsts: &'static [(u32, u32)],
}

/// `envoy.http.early_header_mutation.header_mutation`, the native strip of client-sent reserved
/// headers: absent from istio-proxy 1.20.0-1.20.4 and 1.21.0 (added by istio/proxy bdbdd14f1
/// in 1.20.5, 1.21.1 and 1.22.0).
pub const EARLY_HEADER_MUTATION: Feature = Feature {
    name: "envoy.http.early_header_mutation.header_mutation",
    firsts: &[(20, 5), (21, 1), (22, 0)],
};

/// Envoy's Wasm `failure_policy` (`FAIL_RELOAD`): Envoy 1.33, istio-proxy 1.25.
pub const WASM_FAILURE_POLICY: Feature = Feature {
    name: "envoy.extensions.wasm.v3.PluginConfig.failure_policy",
    firsts: &[(25, 0)],
};

/// After a minor version: the rest of a release (`.3`), a pre-release or dev build of that
/// minor (`-alpha.<sha>`, as master proxies report `1.32-alpha.<sha>`), or the end.
const AFTER_MINOR: &str = "([.-]|$)";
/// After a patch version.
const AFTER_PATCH: &str = "([^0-9]|$)";

impl Feature {
    /// Regex matching the versions that have the feature. A dev build of a minor line
    /// (`1.21-alpha.<sha>`) counts as before its `.0`.
    pub fn present(&self) -> String {
        let mut alts = Vec::new();
        let Some(&(last, _)) = self.firsts.last() else {
            return ".*".into();
        };
        for &(minor, patch) in self.firsts {
            if patch == 0 {
                alts.push(format!(r"^1\.{minor}{AFTER_MINOR}"));
            } else {
                alts.push(format!(r"^1\.{minor}\.{}{AFTER_PATCH}", at_least(patch)));
            }
        }
        alts.push(format!(r"^1\.{}{AFTER_MINOR}", greater(last)));
        alts.push(r"^([2-9]|[1-9][0-9]+)\.".into());
        alts.join("|")
    }

    /// Regex matching every other version: exactly the ones [`Feature::present`] does not.
    pub fn absent(&self) -> String {
        let mut alts = vec![r"^0\.".to_owned()];
        if let Some(lt) = self.firsts.first().and_then(|&(first, _)| less(first)) {
            alts.push(format!(r"^1\.{lt}{AFTER_MINOR}"));
        }
        let mut prev: Option<u32> = None;
        for &(minor, patch) in self.firsts {
            // Minor lines between two listed ones lack it entirely.
            for m in prev.map_or(minor, |p| p + 1)..minor {
                alts.push(format!(r"^1\.{m}{AFTER_MINOR}"));
            }
            if let Some(lt) = less(patch) {
                alts.push(format!(r"^1\.{minor}\.{lt}{AFTER_PATCH}"));
                alts.push(format!(r"^1\.{minor}(-|$)"));
            }
            prev = Some(minor);
        }
        alts.join("|")
    }
}

/// Regex for a decimal number (no leading zeros) greater than `n`.
fn greater(n: u32) -> String {
    let digits: Vec<u32> = n.to_string().bytes().map(|b| u32::from(b - b'0')).collect();
    let k = digits.len();
    let mut alts = vec![format!("[1-9][0-9]{{{k},}}")];
    for (i, &d) in digits.iter().enumerate() {
        if d == 9 {
            continue;
        }
        let prefix: String = digits[..i].iter().map(u32::to_string).collect();
        let rest = k - i - 1;
        let tail = match rest {
            0 => String::new(),
            1 => "[0-9]".to_owned(),
            _ => format!("[0-9]{{{rest}}}"),
        };
        alts.push(format!("{prefix}[{}-9]{tail}", d + 1));
    }
    format!("({})", alts.join("|"))
}

/// Regex for a decimal number greater than or equal to `n`.
fn at_least(n: u32) -> String {
    format!("({n}|{})", greater(n))
}

/// Regex for a decimal number less than `n`; `None` when there is none (`n == 0`). Minor and
/// patch numbers are small, so the numbers are listed.
fn less(n: u32) -> Option<String> {
    (n > 0).then(|| {
        let all: Vec<String> = (0..n).map(|d| d.to_string()).collect();
        format!("({})", all.join("|"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex_lite::Regex;

    /// The feature's availability by its definition; `patch` `None` is a dev build of the
    /// minor line (before its `.0`).
    fn has(f: &Feature, minor: u32, patch: Option<u32>) -> bool {
        let Some(&(m, p)) = f.firsts.iter().find(|&&(m, _)| m >= minor) else {
            return true;
        };
        m == minor && patch.map_or(p == 0, |patch| patch >= p)
    }

    #[test]
    fn present_and_absent_split_every_version_exactly() {
        for f in [EARLY_HEADER_MUTATION, WASM_FAILURE_POLICY] {
            let yes = Regex::new(&f.present()).unwrap();
            let no = Regex::new(&f.absent()).unwrap();
            for minor in 0..120 {
                let mut versions: Vec<(String, Option<u32>)> = vec![
                    (format!("1.{minor}-alpha.0a1b2c"), None),
                    (format!("1.{minor}"), None),
                ];
                for patch in 0..25 {
                    for suffix in ["", "-rc.1", "-distroless", ".1"] {
                        versions.push((format!("1.{minor}.{patch}{suffix}"), Some(patch)));
                    }
                }
                for (v, patch) in versions {
                    let want = has(&f, minor, patch);
                    assert_eq!(yes.is_match(&v), want, "{} present {v}", f.name);
                    assert_eq!(no.is_match(&v), !want, "{} absent {v}", f.name);
                }
            }
            for v in ["2.0.0", "10.1.1", "0.9.9"] {
                assert!(yes.is_match(v) != no.is_match(v), "{v}");
            }
        }
    }

    #[test]
    fn the_known_releases() {
        let yes = Regex::new(&EARLY_HEADER_MUTATION.present()).unwrap();
        for v in ["1.20.0", "1.20.4", "1.21.0"] {
            assert!(!yes.is_match(v), "{v}");
        }
        for v in [
            "1.20.5",
            "1.20.8",
            "1.21.1",
            "1.22.0",
            "1.28.3",
            "1.32-alpha.0a1b2c",
            "1.100.0",
        ] {
            assert!(yes.is_match(v), "{v}");
        }
    }

    #[test]
    fn number_ranges() {
        for n in [0, 1, 5, 9, 10, 19, 26, 99, 100] {
            let gt = Regex::new(&format!("^{}$", greater(n))).unwrap();
            for x in 0..1000u32 {
                assert_eq!(gt.is_match(&x.to_string()), x > n, "{x} > {n}");
            }
            if let Some(lt) = less(n) {
                let lt = Regex::new(&format!("^{lt}$")).unwrap();
                for x in 0..1000u32 {
                    assert_eq!(lt.is_match(&x.to_string()), x < n, "{x} < {n}");
                }
            }
        }
    }
}

//! Condition coverage: for every top-level conjunct of every `when`/`unless`
//! clause, whether some case saw it true and some case saw it false.
//!
//! A conjunct counts only where Cedar evaluates it: the request is in the
//! policy's scope, the earlier clauses let evaluation go on, and the
//! conjuncts before it in its clause were true (Cedar's `&&` stops at the
//! first false one). Cedar decides all of it: for conjunct `j` of clause
//! `k`, probe `P(k, j)` is the policy as a permit with its scope, clauses
//! `1..k` as written and `when { c1 && … && cj }`. The conjunct is reached
//! when `P(k, j-1)` is satisfied, true when `P(k, j)` is, and an error when
//! `P(k, j)` errors. Every probe of every policy is decided in one call of
//! the ordinary authorizer per case.

use std::collections::HashSet;

use cedar_policy::{Authorizer, PolicyId, PolicySet};

use super::Loaded;
use super::conditions::{self, Kind, Structure, StructureError};
use crate::policy::PolicySnapshot;

/// What the suites showed of one conjunct.
#[derive(Debug, Clone)]
pub struct ConjunctCoverage {
    /// The policy's id.
    pub policy: String,
    /// `when` or `unless`.
    pub kind: &'static str,
    /// 1-based position of the clause among the policy's clauses.
    pub clause: usize,
    /// 1-based position of the conjunct in its clause.
    pub conjunct: usize,
    /// How many conjuncts the clause has.
    pub of: usize,
    /// The conjunct in Cedar syntax.
    pub text: String,
    /// Cases where it was evaluated and true.
    pub seen_true: usize,
    /// Cases where it was evaluated and false.
    pub seen_false: usize,
    /// Cases where evaluating it errored.
    pub errors: usize,
}

impl ConjunctCoverage {
    /// Seen both true and false.
    pub fn covered(&self) -> bool {
        self.seen_true > 0 && self.seen_false > 0
    }

    /// What is missing, in words (`None` when covered).
    pub fn missing(&self) -> Option<&'static str> {
        match (self.seen_true > 0, self.seen_false > 0) {
            (true, true) => None,
            (true, false) => Some("never false"),
            (false, true) => Some("never true"),
            (false, false) => Some("never evaluated"),
        }
    }
}

/// The condition coverage of a run.
#[derive(Debug, Clone, Default)]
pub struct ConditionCoverage {
    /// Every conjunct of every static policy, in policy order (file, line).
    pub conjuncts: Vec<ConjunctCoverage>,
}

impl ConditionCoverage {
    /// Conjuncts seen both true and false.
    pub fn covered(&self) -> usize {
        self.conjuncts.iter().filter(|c| c.covered()).count()
    }

    /// Covered conjuncts in percent of all (100 when there are none).
    pub fn percent(&self) -> f64 {
        percent(self.covered(), self.conjuncts.len())
    }
}

/// `part` in percent of `whole`, 100 for an empty whole.
pub(crate) fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        100.0
    } else {
        // Counts of cases and conjuncts are far below 2^52.
        #[expect(clippy::cast_precision_loss, reason = "small counts")]
        let ratio = part as f64 / whole as f64;
        ratio * 100.0
    }
}

/// One probe `P(k, j)`: the conjunct it lets evaluation reach (`j + 1`)
/// and the conjunct whose value it gives (`j`), as indices into the list
/// of all conjuncts.
struct Probe {
    reaches: Option<usize>,
    decides: Option<usize>,
}

/// Evaluates every conjunct of every static policy of `snapshot` on every
/// case of `loaded` that can be evaluated.
pub fn condition_coverage(
    snapshot: &PolicySnapshot,
    loaded: &Loaded,
) -> Result<ConditionCoverage, StructureError> {
    let mut conjuncts = Vec::new();
    let mut probes: Vec<(Probe, cedar_policy::Policy)> = Vec::new();
    for (id, _) in snapshot.policy_ids() {
        let Some(policy) = snapshot.policies().policy(&PolicyId::new(&id)) else {
            continue;
        };
        if !policy.is_static() {
            continue;
        }
        let structure = Structure::of(policy)?;
        let original = structure.original();
        for (k, condition) in structure.conditions.iter().enumerate() {
            let n = condition.conjuncts.len();
            for j in 0..=n {
                let mut clauses = original[..k].to_vec();
                if j > 0 {
                    clauses.push((Kind::When, conditions::conjoin(&condition.conjuncts[..j])));
                }
                let est = structure.rebuild(&clauses, None, true);
                let first = conjuncts.len();
                probes.push((
                    Probe {
                        reaches: (j < n).then_some(first + j),
                        decides: j.checked_sub(1).map(|i| first + i),
                    },
                    conditions::policy(&id, est)?,
                ));
            }
            for (j, conjunct) in condition.conjuncts.iter().enumerate() {
                conjuncts.push(ConjunctCoverage {
                    policy: id.clone(),
                    kind: condition.kind.as_str(),
                    clause: k + 1,
                    conjunct: j + 1,
                    of: n,
                    text: conditions::display(conjunct),
                    seen_true: 0,
                    seen_false: 0,
                    errors: 0,
                });
            }
        }
    }
    // Probe ids are their indices.
    let (meta, policies): (Vec<Probe>, Vec<cedar_policy::Policy>) = probes
        .into_iter()
        .enumerate()
        .map(|(i, (probe, policy))| (probe, policy.new_id(PolicyId::new(i.to_string()))))
        .unzip();
    let set = PolicySet::from_policies(policies).map_err(|e| StructureError::FromJson {
        id: "(condition probes)".to_owned(),
        message: e.to_string(),
    })?;
    let authorizer = Authorizer::new();
    let index = |id: &PolicyId| id.to_string().parse::<usize>().ok();
    for (_, _, request, entities) in loaded.requests() {
        let response = authorizer.is_authorized(request, &set, entities);
        let satisfied: HashSet<usize> = response.diagnostics().reason().filter_map(index).collect();
        let errored: HashSet<usize> = response
            .diagnostics()
            .errors()
            .filter_map(|e| match e {
                cedar_policy::AuthorizationError::PolicyEvaluationError(e) => index(e.policy_id()),
            })
            .collect();
        let mut reached = vec![false; conjuncts.len()];
        for (i, probe) in meta.iter().enumerate() {
            if let Some(next) = probe.reaches
                && satisfied.contains(&i)
            {
                reached[next] = true;
            }
        }
        for (i, probe) in meta.iter().enumerate() {
            let Some(target) = probe.decides.filter(|t| reached[*t]) else {
                continue;
            };
            let c = &mut conjuncts[target];
            if errored.contains(&i) {
                c.errors += 1;
            } else if satisfied.contains(&i) {
                c.seen_true += 1;
            } else {
                c.seen_false += 1;
            }
        }
    }
    Ok(ConditionCoverage { conjuncts })
}

#[cfg(test)]
#[allow(clippy::expect_used, reason = "tests may panic")]
mod tests {
    use std::path::Path;

    use crate::policy::PolicySnapshot;
    use crate::policytest::{Fate, Loaded, load, mutate};

    const SCHEMA: &str = r#"
        entity User { admin: Bool, level: Long };
        action "read" appliesTo { principal: User, resource: User };
    "#;
    const POLICY: &str = r#"
        @id("p")
        permit (principal, action, resource)
        when { principal.admin && principal.level > 1 };
    "#;
    /// `alice` is no admin; `bob` is an admin of level 2. No case has an
    /// admin of level 1 or less.
    const SUITE: &str = r#"
entities:
  - {uid: {type: User, id: alice}, attrs: {admin: false, level: 5}, parents: []}
  - {uid: {type: User, id: bob}, attrs: {admin: true, level: 2}, parents: []}
cases:
  - {name: alice, principal: User::"alice", action: read, resource: User::"alice", expect: deny}
  - {name: bob, principal: User::"bob", action: read, resource: User::"bob", expect: allow}
"#;

    fn setup(dir: &Path) -> (PolicySnapshot, Loaded) {
        std::fs::create_dir_all(dir.join("policies")).expect("a directory");
        std::fs::write(dir.join("schema.cedarschema"), SCHEMA).expect("a schema");
        std::fs::write(dir.join("policies/p.cedar"), POLICY).expect("a policy");
        std::fs::write(dir.join("suite.yaml"), SUITE).expect("a suite");
        let snapshot = crate::policy::load(&dir.join("policies"), &dir.join("schema.cedarschema"))
            .unwrap_or_else(|e| panic!("{}", e.render()));
        let loaded = load(&snapshot, &[dir.join("suite.yaml")]);
        (snapshot, loaded)
    }

    #[test]
    fn a_conjunct_counts_only_where_the_conjuncts_before_it_were_true() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (snapshot, loaded) = setup(dir.path());

        let coverage = super::condition_coverage(&snapshot, &loaded).expect("coverage");

        let seen: Vec<(usize, usize, usize)> = coverage
            .conjuncts
            .iter()
            .map(|c| (c.seen_true, c.seen_false, c.errors))
            .collect();
        // alice stops at `principal.admin`; her level is never looked at.
        assert_eq!(seen, vec![(1, 1, 0), (1, 0, 0)]);
        assert_eq!(coverage.conjuncts[1].missing(), Some("never false"));
        assert_eq!(coverage.conjuncts[1].text, "principal.level > 1");
        assert!((coverage.percent() - 50.0).abs() < f64::EPSILON);
    }

    #[test]
    fn the_mutant_no_case_tells_apart_survives_and_the_others_are_killed() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (snapshot, loaded) = setup(dir.path());

        let report =
            mutate(&snapshot, &loaded, &dir.path().join("none.yaml"), false).expect("mutants");

        let fates: Vec<(&str, bool)> = report
            .mutants
            .iter()
            .map(|m| (m.mutation.as_str(), matches!(m.fate, Fate::Survived)))
            .collect();
        assert_eq!(
            fates,
            vec![
                ("drop-policy", false),
                ("drop-conjunct-1.1", false),
                ("negate-conjunct-1.1", false),
                ("drop-conjunct-1.2", true),
                ("negate-conjunct-1.2", false),
                ("negate-clause-1", false),
            ]
        );
        assert_eq!(report.killed(), 5);
        assert!((report.score() - 500.0 / 6.0).abs() < 1e-9);
    }
}

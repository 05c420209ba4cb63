//! `cedargate test --mutate`: mutation testing of the suites. Each mutant is
//! the policy set with one policy changed (dropped, a condition conjunct
//! dropped or negated, a clause negated, a scope part unconstrained); the
//! suites run against it, and a mutant no passing case notices survives:
//! the suites would not notice that change to the policies either.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cedar_policy::{
    Authorizer, Entities, Policy, PolicyId, PolicySet, Request, ValidationMode, Validator,
};

use super::conditions::{self, Kind, Structure, StructureError};
use super::coverage::percent;
use super::equivalents;
use super::suite::{LoadedCase, LoadedSuite};
use super::{Loaded, Outcome, judge};
use crate::policy::{PolicyOrigin, PolicySnapshot};

/// What became of a mutant.
#[derive(Debug, Clone)]
pub enum Fate {
    /// A case that passes on the policies failed on the mutant.
    Killed {
        /// The suite of the first such case.
        suite: String,
        /// Its name.
        case: String,
    },
    /// The mutant does not validate against the schema: it could never be
    /// loaded, so it says nothing about the suites.
    Rejected(String),
    /// Listed as equivalent (it decides every request as the policy does),
    /// with the reason given.
    Equivalent(String),
    /// Every case still passes.
    Survived,
}

/// One mutant and its fate.
#[derive(Debug, Clone)]
pub struct Mutant {
    /// The id of the mutated policy.
    pub policy: String,
    /// Where the policy is written.
    pub origin: Option<PolicyOrigin>,
    /// The mutation, as a stable key (`negate-conjunct-1.2`), used by the
    /// list of equivalent mutants.
    pub mutation: String,
    /// The mutation in words.
    pub description: String,
    /// Killed, rejected, equivalent or survived.
    pub fate: Fate,
}

/// The result of mutation testing.
#[derive(Debug, Clone, Default)]
pub struct MutationReport {
    /// Every mutant, in policy order (file, line).
    pub mutants: Vec<Mutant>,
    /// Entries of the equivalents list that are wrong: the mutant does not
    /// exist, or a case kills it.
    pub problems: Vec<String>,
    /// The equivalents list that was read, if any.
    pub equivalents_file: Option<String>,
    /// Wall time of the run.
    pub elapsed: std::time::Duration,
}

impl MutationReport {
    fn count(&self, f: impl Fn(&Fate) -> bool) -> usize {
        self.mutants.iter().filter(|m| f(&m.fate)).count()
    }

    /// Mutants a case killed.
    pub fn killed(&self) -> usize {
        self.count(|f| matches!(f, Fate::Killed { .. }))
    }

    /// Mutants the schema rejects.
    pub fn rejected(&self) -> usize {
        self.count(|f| matches!(f, Fate::Rejected(_)))
    }

    /// Mutants listed as equivalent.
    pub fn equivalent(&self) -> usize {
        self.count(|f| matches!(f, Fate::Equivalent(_)))
    }

    /// Mutants no case noticed.
    pub fn survivors(&self) -> impl Iterator<Item = &Mutant> {
        self.mutants
            .iter()
            .filter(|m| matches!(m.fate, Fate::Survived))
    }

    /// Killed mutants in percent of those that validate and are not listed
    /// as equivalent (100 when there are none).
    pub fn score(&self) -> f64 {
        let killed = self.killed();
        percent(killed, killed + self.survivors().count())
    }
}

/// Why mutation testing could not run.
#[derive(Debug, thiserror::Error)]
pub enum MutateError {
    /// A policy could not be taken apart or a mutant built.
    #[error(transparent)]
    Structure(#[from] StructureError),
    /// The list of equivalent mutants cannot be read.
    #[error("cannot read the equivalent mutants `{path}`: {message}")]
    Equivalents {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A mutant could not be put into a policy set.
    #[error("mutant `{policy}` {mutation}: {message}")]
    Set {
        /// The policy.
        policy: String,
        /// The mutation.
        mutation: String,
        /// Cedar's error.
        message: String,
    },
}

/// A mutant before it is run.
struct Candidate {
    policy: String,
    mutation: String,
    description: String,
    /// `None`: drop the policy.
    replacement: Option<Policy>,
}

/// Runs the suites of `loaded` against every mutant of every static policy
/// of `snapshot`. `equivalents` is the list of equivalent mutants
/// (`required`: it must exist).
pub fn mutate(
    snapshot: &PolicySnapshot,
    loaded: &Loaded,
    equivalents: &Path,
    required: bool,
) -> Result<MutationReport, MutateError> {
    let started = std::time::Instant::now();
    let listed = equivalents::read(equivalents, required)?;
    let validator = Validator::new(snapshot.schema().clone());
    // Only cases that pass on the policies can tell a mutant apart.
    let passing: Vec<(&LoadedSuite, &LoadedCase, &Request, &Entities)> = loaded
        .requests()
        .filter(|(_, case, request, entities)| {
            matches!(
                judge(case, &snapshot.decide(request, entities)),
                Outcome::Passed
            )
        })
        .collect();
    let mut jobs = Vec::new();
    for (id, origin) in snapshot.policy_ids() {
        let Some(policy) = snapshot.policies().policy(&PolicyId::new(&id)) else {
            continue;
        };
        if policy.is_static() {
            jobs.extend(candidates(policy)?.into_iter().map(|c| (origin.clone(), c)));
        }
    }
    // What each policy alone makes of each passing case, shared by its
    // mutants: a mutant can change a decision only where it differs.
    let alone_before: BTreeMap<String, Vec<Alone>> = jobs
        .iter()
        .map(|(_, c)| c.policy.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter_map(|id| {
            let policy = snapshot.policies().policy(&PolicyId::new(id))?;
            let set = PolicySet::from_policies([policy.clone()]).ok()?;
            let outcomes = passing
                .iter()
                .map(|(_, _, request, entities)| alone(&set, request, entities))
                .collect();
            Some((id.to_owned(), outcomes))
        })
        .collect();
    let fates = run_all(snapshot, &validator, &passing, &alone_before, &jobs)?;
    let mut mutants: Vec<Mutant> = jobs
        .into_iter()
        .zip(fates)
        .map(|((origin, candidate), fate)| Mutant {
            policy: candidate.policy,
            origin: Some(origin),
            mutation: candidate.mutation,
            description: candidate.description,
            fate,
        })
        .collect();
    let problems = match &listed {
        Some(listed) => equivalents::apply(listed, &mut mutants, equivalents),
        None => Vec::new(),
    };
    Ok(MutationReport {
        mutants,
        problems,
        equivalents_file: listed.map(|_| equivalents.display().to_string()),
        elapsed: started.elapsed(),
    })
}

/// The fate of every job, in order: the jobs are dealt round-robin to one
/// thread per available core (each mutant is independent of the others).
fn run_all(
    snapshot: &PolicySnapshot,
    validator: &Validator,
    passing: &[(&LoadedSuite, &LoadedCase, &Request, &Entities)],
    alone_before: &BTreeMap<String, Vec<Alone>>,
    jobs: &[(PolicyOrigin, Candidate)],
) -> Result<Vec<Fate>, MutateError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(jobs.len().max(1));
    let fate = |candidate: &Candidate| {
        let before = alone_before
            .get(&candidate.policy)
            .map(Vec::as_slice)
            .unwrap_or_default();
        match &candidate.replacement {
            Some(mutant) => match rejection(validator, mutant) {
                Some(reason) => Ok(Fate::Rejected(reason)),
                None => run_mutant(snapshot, passing, before, candidate),
            },
            None => run_mutant(snapshot, passing, before, candidate),
        }
    };
    let dealt: Vec<Vec<(usize, Result<Fate, MutateError>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let fate = &fate;
                scope.spawn(move || {
                    jobs.iter()
                        .enumerate()
                        .skip(t)
                        .step_by(threads)
                        .map(|(i, (_, candidate))| (i, fate(candidate)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut fates: Vec<Option<Fate>> = vec![None; jobs.len()];
    for (i, fate) in dealt.into_iter().flatten() {
        fates[i] = Some(fate?);
    }
    Ok(fates.into_iter().flatten().collect())
}

/// Why strict validation rejects `mutant`, if it does.
fn rejection(validator: &Validator, mutant: &Policy) -> Option<String> {
    let set = PolicySet::from_policies([mutant.clone()]).ok()?;
    let result = validator.validate(&set, ValidationMode::Strict);
    result.validation_errors().next().map(|e| e.to_string())
}

/// Whether a policy alone is satisfied by a request, and whether it errors.
type Alone = (bool, bool);

/// What the one policy of `set` makes of a request, by the authorizer.
fn alone(set: &PolicySet, request: &Request, entities: &Entities) -> Alone {
    let response = Authorizer::new().is_authorized(request, set, entities);
    (
        response.diagnostics().reason().next().is_some(),
        response.diagnostics().errors().next().is_some(),
    )
}

/// Decides the passing cases with the mutant in place of its policy and
/// returns the first case that no longer passes. Only cases where the
/// mutant alone is satisfied or errors differently from the policy alone
/// (`before`) are decided: elsewhere the set decides as it did.
fn run_mutant(
    snapshot: &PolicySnapshot,
    passing: &[(&LoadedSuite, &LoadedCase, &Request, &Entities)],
    before: &[Alone],
    candidate: &Candidate,
) -> Result<Fate, MutateError> {
    let set_error = |message: String| MutateError::Set {
        policy: candidate.policy.clone(),
        mutation: candidate.mutation.clone(),
        message,
    };
    let mut set = snapshot.policies().clone();
    set.remove_static(PolicyId::new(&candidate.policy))
        .map_err(|e| set_error(e.to_string()))?;
    let mut single = PolicySet::new();
    if let Some(mutant) = &candidate.replacement {
        set.add(mutant.clone())
            .map_err(|e| set_error(e.to_string()))?;
        single
            .add(mutant.clone())
            .map_err(|e| set_error(e.to_string()))?;
    }
    for (i, (suite, case, request, entities)) in passing.iter().enumerate() {
        if before.get(i) == Some(&alone(&single, request, entities)) {
            continue;
        }
        let decision = snapshot.decide_on(&set, request, entities);
        if !matches!(judge(case, &decision), Outcome::Passed) {
            return Ok(Fate::Killed {
                suite: suite.path.clone(),
                case: case.name.clone(),
            });
        }
    }
    Ok(Fate::Survived)
}

/// Every mutant of one static policy, in a stable order.
fn candidates(policy: &Policy) -> Result<Vec<Candidate>, StructureError> {
    let structure = Structure::of(policy)?;
    let id = structure.id.clone();
    let effect = match policy.effect() {
        cedar_policy::Effect::Permit => "permit",
        cedar_policy::Effect::Forbid => "forbid",
    };
    let mut out = vec![Candidate {
        policy: id.clone(),
        mutation: "drop-policy".to_owned(),
        description: format!("drop the {effect}"),
        replacement: None,
    }];
    let original = structure.original();
    let build = |clauses: &[(Kind, serde_json::Value)], widen: Option<&str>| {
        conditions::policy(&id, structure.rebuild(clauses, widen, false))
    };
    let several = structure.conditions.len() > 1;
    for (k, condition) in structure.conditions.iter().enumerate() {
        let clause = if several {
            format!("clause {} (`{}`)", k + 1, condition.kind.as_str())
        } else {
            format!("the `{}` clause", condition.kind.as_str())
        };
        let n = condition.conjuncts.len();
        let whole = conditions::display(&original[k].1);
        if n == 1 {
            let mut clauses = original.clone();
            clauses.remove(k);
            out.push(Candidate {
                policy: id.clone(),
                mutation: format!("drop-clause-{}", k + 1),
                description: format!("drop {clause} `{whole}`"),
                replacement: Some(build(&clauses, None)?),
            });
        }
        for (j, conjunct) in condition.conjuncts.iter().enumerate().filter(|_| n > 1) {
            let text = conditions::display(conjunct);
            let mut rest = condition.conjuncts.clone();
            rest.remove(j);
            let mut clauses = original.clone();
            clauses[k].1 = conditions::conjoin(&rest);
            out.push(Candidate {
                policy: id.clone(),
                mutation: format!("drop-conjunct-{}.{}", k + 1, j + 1),
                description: format!("drop conjunct {} of {n} of {clause}: `{text}`", j + 1),
                replacement: Some(build(&clauses, None)?),
            });
            let mut negated = condition.conjuncts.clone();
            negated[j] = conditions::negate(conjunct);
            clauses[k].1 = conditions::conjoin(&negated);
            out.push(Candidate {
                policy: id.clone(),
                mutation: format!("negate-conjunct-{}.{}", k + 1, j + 1),
                description: format!("negate conjunct {} of {n} of {clause}: `{text}`", j + 1),
                replacement: Some(build(&clauses, None)?),
            });
        }
        let mut clauses = original.clone();
        clauses[k].1 = conditions::negate(&original[k].1);
        let description = if n == 1 {
            format!("negate {clause} `{whole}`")
        } else {
            format!("negate {clause} as a whole ({n} conjuncts)")
        };
        out.push(Candidate {
            policy: id.clone(),
            mutation: format!("negate-clause-{}", k + 1),
            description,
            replacement: Some(build(&clauses, None)?),
        });
    }
    for part in ["principal", "action", "resource"] {
        if let Some(scope) = structure.scope(part) {
            out.push(Candidate {
                policy: id.clone(),
                mutation: format!("widen-{part}"),
                description: format!("widen the scope `{scope}` to any {part}"),
                replacement: Some(build(&original, Some(part))?),
            });
        }
    }
    Ok(out)
}

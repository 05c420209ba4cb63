//! The command line: `cedargate <command>`. Each command calls the same
//! library functions the server uses.

/// `println!` that ignores a closed stdout (`cedargate … | head`) instead
/// of panicking on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

use std::path::PathBuf;
use std::process::ExitCode;

pub use crate::config::StoreArgs;
pub use crate::policy::PolicyArgs;
use clap::{Args, Parser, Subcommand};

pub use crate::assurance::command::ProveArgs;
use crate::policy::{self, LoadError, PolicySnapshot};
use crate::policytest;
pub use crate::policytest::command::TestArgs;

/// cedargate: an authorization sidecar for multi-tenant applications.
///
/// Decisions come from the Cedar policies in a policy directory, validated
/// against a schema. Every flag can also be set through the environment
/// variable shown with it.
#[derive(Debug, Parser)]
#[command(name = "cedargate", version, about, long_about)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the decision sidecar (HTTP): AuthZEN and native decision APIs,
    /// entity store, policy hot reload, health and metrics.
    Serve(Box<crate::config::ServeConfig>),
    /// Parse and strictly validate the policies against the schema.
    ///
    /// Exits 0 when valid; otherwise prints every problem with its file,
    /// line and a caret under it, and exits 1.
    Validate(PolicyArgs),
    /// Format the `.cedar` files of the policy directory in place.
    Fmt(FmtArgs),
    /// Decide one request and explain the decision by policy id and location.
    Check(CheckArgs),
    /// Run YAML policy test suites and report policy and condition
    /// coverage; with `--mutate`, mutation testing of the suites.
    Test(TestArgs),
    /// Prove the invariants (`invariants.yaml` in the policy directory) and
    /// that no policy can error, for every request and every entity store.
    ///
    /// Needs the SMT solver cvc5 1.3.1 (`$CVC5`, else `cvc5` on the PATH).
    /// Each failure prints a counterexample, re-checked with the
    /// authorizer, as a test case to paste into a suite. Exits 1 when
    /// anything is not proved.
    Prove(ProveArgs),
    /// Prove two policy directories equivalent in every request
    /// environment of the schema, or show a request and entities on which
    /// they decide differently (needs cvc5, like `prove`). Exits 1 when
    /// they differ.
    Diff(crate::assurance::diff::DiffArgs),
    /// Decide the requests of a decision log (written with
    /// `--decision-log-requests`) again, on the store's current entities,
    /// with the policies in force and with a candidate set, and print how
    /// many change and which, grouped by action, change and policies.
    Replay(crate::replay::ReplayArgs),
    /// System administrators (bootstrap: the first one cannot be invited).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Organizations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Print an organization's audit trail.
    Audit(AuditArgs),
    /// Translate a filter plan (the answer of `POST /v1/plan`) into a SQL
    /// `WHERE` expression.
    Plan(PlanArgs),
}

/// `cedargate admin …`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create (or promote) a system administrator, who creates
    /// organizations and approves third-party agents.
    Create {
        /// E-mail of the administrator.
        #[arg(long)]
        email: String,
        /// First name.
        #[arg(long, default_value = "System")]
        first_name: String,
        /// Last name.
        #[arg(long, default_value = "Administrator")]
        last_name: String,
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `cedargate org …`.
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organization; its first owner receives an invitation.
    Create {
        /// Id (a-z, 0-9, `-`, `_`), e.g. `acme`.
        #[arg(long)]
        id: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Require two-step verification for every request in it.
        #[arg(long)]
        require_mfa: bool,
        /// E-mail of the first owner.
        #[arg(long)]
        owner_email: String,
        /// First name of the owner.
        #[arg(long)]
        owner_first_name: String,
        /// Last name of the owner.
        #[arg(long)]
        owner_last_name: String,
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `cedargate audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The organization.
    #[arg(long)]
    pub org: String,
    /// Only events by or about this user id.
    #[arg(long)]
    pub user: Option<String>,
    /// Only this action, or a prefix ending in `.` (e.g. `invitation.`).
    #[arg(long)]
    pub action: Option<String>,
    /// From this unix time.
    #[arg(long)]
    pub since: Option<i64>,
    /// Until this unix time.
    #[arg(long)]
    pub until: Option<i64>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `cedargate plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Print the SQL `WHERE` expression (`TRUE`, `FALSE` or the condition).
    /// Without it the condition tree is printed as JSON.
    #[arg(long)]
    pub sql: bool,
    /// The SQL for an attribute path, e.g. `org.tenant=orgs.tenant`
    /// (default: the column `"org_tenant"`). Repeatable.
    #[arg(long = "column", value_name = "PATH=SQL", value_parser = parse_mapping)]
    pub columns: Vec<(String, String)>,
    /// A subquery listing the elements of a set-valued attribute path for
    /// the current row, for `contains`. Repeatable.
    #[arg(long = "set-column", value_name = "PATH=SUBQUERY", value_parser = parse_mapping)]
    pub set_columns: Vec<(String, String)>,
    /// The SQL for the resource's id.
    #[arg(long, value_name = "SQL", default_value = "\"id\"")]
    pub id_column: String,
    /// The table of (`entity_id`, `ancestor_id`) pairs, for `in` tests.
    #[arg(long, value_name = "TABLE")]
    pub ancestors_table: Option<String>,
    /// The plan as JSON (`-` or absent: standard input).
    pub file: Option<PathBuf>,
}

fn parse_mapping(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((path, sql)) if !path.is_empty() && !sql.is_empty() => {
            Ok((path.to_owned(), sql.to_owned()))
        }
        _ => Err(format!("expected PATH=SQL, got `{s}`")),
    }
}

/// `cedargate fmt`.
#[derive(Debug, Args)]
pub struct FmtArgs {
    /// Directory of `.cedar` policy files (searched recursively).
    #[arg(long, env = "CEDARGATE_POLICIES", default_value = "policies")]
    pub policies: PathBuf,
    /// Write nothing; list the files that are not formatted and exit 1 if any.
    #[arg(long)]
    pub check: bool,
}

/// `cedargate check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Where the policies and the schema are.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// The principal, e.g. `User::"alice"`.
    #[arg(long)]
    pub principal: String,
    /// The action, e.g. `Action::"billing.read"` or just `billing.read`.
    #[arg(long)]
    pub action: String,
    /// The resource, e.g. `Organization::"acme"`.
    #[arg(long)]
    pub resource: String,
    /// The request context as a JSON object, e.g. `{"mfa": true}`.
    #[arg(long, default_value = "{}")]
    pub context: String,
    /// A JSON file of entities in Cedar's entity format.
    #[arg(long)]
    pub entities: Option<PathBuf>,
    /// Print the decision as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Explain the decision: for a Deny, each permit in scope with the
    /// first condition that did not hold and its values, then the forbids
    /// that fired with their `@message`.
    #[arg(long)]
    pub explain: bool,
}

/// Runs a command and returns the process exit code.
pub fn run(command: Command) -> ExitCode {
    match command {
        Command::Serve(config) => serve(*config),
        Command::Validate(args) => validate(&args),
        Command::Fmt(args) => fmt(&args),
        Command::Check(args) => check(&args),
        Command::Test(args) => test(&args),
        Command::Prove(args) => prove(&args),
        Command::Diff(args) => crate::assurance::diff::run(&args),
        Command::Replay(args) => replay(&args),
        Command::Admin(command) => block_on(admin(command)),
        Command::Org(command) => block_on(org(command)),
        Command::Audit(args) => block_on(audit(args)),
        Command::Plan(args) => plan(&args),
    }
}

fn plan(args: &PlanArgs) -> ExitCode {
    match plan_output(args) {
        Ok(text) => {
            out!("{text}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn plan_output(args: &PlanArgs) -> Result<String, String> {
    use std::io::Read as _;
    let text = match &args.file {
        Some(path) if path.as_os_str() != "-" => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?,
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            text
        }
    };
    let plan: policy::FilterPlan =
        serde_json::from_str(&text).map_err(|e| format!("not a filter plan: {e}"))?;
    if !args.sql {
        return Ok(match plan {
            policy::FilterPlan::Conditional { condition } => {
                format!("{:#}", condition.to_json())
            }
            other => format!(
                "{:#}",
                serde_json::to_value(other).map_err(|e| e.to_string())?
            ),
        });
    }
    let columns = policy::Columns {
        id: Some(args.id_column.clone()),
        attrs: args.columns.iter().cloned().collect(),
        sets: args.set_columns.iter().cloned().collect(),
        ancestors_table: args.ancestors_table.clone(),
    };
    match plan {
        policy::FilterPlan::AlwaysAllowed => Ok("TRUE".to_owned()),
        policy::FilterPlan::AlwaysDenied => Ok("FALSE".to_owned()),
        policy::FilterPlan::Conditional { condition } => {
            policy::to_sql(&condition, &columns).map_err(|e| e.to_string())
        }
    }
}

fn replay(args: &crate::replay::ReplayArgs) -> ExitCode {
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(crate::replay::run(args)));
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

fn block_on(future: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(future));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn admin(command: AdminCommand) -> anyhow::Result<()> {
    let AdminCommand::Create {
        email,
        first_name,
        last_name,
        store,
    } = command;
    let (service, _mailer) = crate::startup::offline_service(&store).await?;
    let actor = crate::invites::Actor::cli();
    let user_id = service
        .create_admin(
            &actor,
            &email,
            &first_name,
            &last_name,
            crate::clock::unix_now(),
        )
        .await?;
    out!("system administrator {email}: user id {user_id}");
    out!("act as them with the header `X-Cedargate-Actor: {user_id}` (or their e-mail)");
    Ok(())
}

async fn org(command: OrgCommand) -> anyhow::Result<()> {
    let OrgCommand::Create {
        id,
        name,
        require_mfa,
        owner_email,
        owner_first_name,
        owner_last_name,
        store,
    } = command;
    let (service, mailer) = crate::startup::offline_service(&store).await?;
    let owner = crate::invites::service::InviteInput {
        first_name: owner_first_name,
        last_name: owner_last_name,
        email: owner_email.clone(),
        role: None,
        permissions: None,
        department: None,
        restrictions: None,
        agent: false,
        send: true,
    };
    let now = crate::clock::unix_now();
    let outcome = service
        .create_org(
            &crate::invites::Actor::cli(),
            &id,
            &name,
            require_mfa,
            owner,
            now,
        )
        .await?;
    mailer.deliver_due(now).await?;
    out!(
        "organization `{id}` created; owner {owner_email} ({}): {}",
        outcome.user_id,
        outcome.outcome
    );
    out!(
        "the invitation e-mail is in {}",
        store.invites.mail_sink(&store.database_url).describe()
    );
    Ok(())
}

async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let pool = crate::db::connect(&args.store.database_url).await?;
    let filter = crate::audit::Filter {
        user: args.user,
        action: args.action,
        since: args.since,
        until: args.until,
        limit: Some(10_000),
    };
    for record in crate::audit::query(&pool, &args.org, &filter).await? {
        if args.json {
            out!("{}", serde_json::to_string(&record)?);
        } else {
            out!(
                "{:>6}  {}  {:<36}  {:<32}  {:<40}  {}",
                record.id,
                record.at,
                record.actor,
                record.action,
                record.target.unwrap_or_default(),
                record.outcome
            );
        }
    }
    Ok(())
}

fn serve(config: crate::config::ServeConfig) -> ExitCode {
    crate::startup::init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(async {
        let app = crate::startup::Application::build(config).await?;
        app.run_until_stopped(crate::startup::shutdown_signal())
            .await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the snapshot, printing every problem on failure.
fn load_or_report(args: &PolicyArgs) -> Option<PolicySnapshot> {
    match policy::load(&args.policies, &args.schema) {
        Ok(snapshot) => Some(snapshot),
        Err(e) => {
            report_load_error(&e);
            None
        }
    }
}

fn report_load_error(e: &LoadError) {
    for problem in e.problems() {
        eprintln!("{problem:?}");
    }
    eprintln!("error: {e}");
}

fn validate(args: &PolicyArgs) -> ExitCode {
    match load_or_report(args) {
        Some(snapshot) => {
            out!(
                "ok: {} policies in {} files valid against the schema",
                snapshot.policies().policies().count(),
                snapshot.files().len()
            );
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

fn fmt(args: &FmtArgs) -> ExitCode {
    let outcomes = match policy::fmt::format_dir(&args.policies, args.check) {
        Ok(outcomes) => outcomes,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut unformatted = false;
    let mut failed = false;
    for outcome in outcomes {
        match outcome {
            policy::fmt::FmtOutcome::Unchanged(_) => {}
            policy::fmt::FmtOutcome::Changed(path) => {
                unformatted = true;
                let verb = if args.check {
                    "not formatted"
                } else {
                    "formatted"
                };
                out!("{verb}: {}", path.display());
            }
            policy::fmt::FmtOutcome::Failed(_, report) => {
                failed = true;
                eprintln!("{report:?}");
            }
        }
    }
    // A file that does not parse is an error with or without --check.
    if failed || (unformatted && args.check) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn check(args: &CheckArgs) -> ExitCode {
    let Some(snapshot) = load_or_report(&args.policy) else {
        return ExitCode::FAILURE;
    };
    match check_decision(&snapshot, args) {
        Ok((decision, explanation)) if args.json => {
            let mut json = serde_json::json!({
                "decision": decision.as_str(),
                "reasons": decision.reasons.iter().map(|id| serde_json::json!({
                    "id": id,
                    "origin": snapshot.origin(id),
                })).collect::<Vec<_>>(),
                "errors": decision.errors,
            });
            if let Some(explanation) = explanation {
                json["explanation"] = serde_json::json!(explanation);
            }
            out!("{json:#}");
            ExitCode::SUCCESS
        }
        Ok((decision, explanation)) => {
            out!("decision: {}", decision.as_str().to_uppercase());
            if decision.reasons.is_empty() && decision.errors.is_empty() {
                out!("no permit policy matched (default deny)");
            }
            for id in &decision.reasons {
                match snapshot.origin(id) {
                    Some(o) => {
                        let effect = if o.effect == cedar_policy::Effect::Permit {
                            "permit"
                        } else {
                            "forbid"
                        };
                        out!("  {effect} {id}  {}:{}", o.file, o.line);
                    }
                    None => out!("  {id}"),
                }
            }
            for error in &decision.errors {
                out!("  error: {error}");
            }
            if let Some(explanation) = explanation {
                print_explanation(&explanation);
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The explanation under the decision, missing conditions first.
fn print_explanation(explanation: &policy::Explanation) {
    if !explanation.unsatisfied.is_empty() {
        out!("why: permits in scope that did not apply");
    }
    for u in &explanation.unsatisfied {
        out!("  permit {}  {}", u.policy, u.at.as_deref().unwrap_or(""));
        out!("    needs {}", u.condition);
        out!("    was   {}", u.evaluated);
    }
    for d in explanation
        .determining
        .iter()
        .filter(|d| d.effect == "forbid")
    {
        let message = d.message.as_deref().unwrap_or("(no @message)");
        out!("why: {} forbids: {message}", d.policy);
    }
}

fn check_decision(
    snapshot: &PolicySnapshot,
    args: &CheckArgs,
) -> Result<(policy::Decision, Option<policy::Explanation>), String> {
    let uid = |field, s: &str| policy::parse_uid(field, &serde_json::Value::String(s.to_owned()));
    let principal = uid("principal", &args.principal).map_err(|e| e.to_string())?;
    let action = policy::parse_action(&serde_json::Value::String(args.action.clone()))
        .map_err(|e| e.to_string())?;
    let resource = uid("resource", &args.resource).map_err(|e| e.to_string())?;
    let context: serde_json::Value =
        serde_json::from_str(&args.context).map_err(|e| format!("--context is not JSON: {e}"))?;
    let entities = match &args.entities {
        None => serde_json::Value::Array(Vec::new()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
            serde_json::from_str(&text)
                .map_err(|e| format!("`{}` is not JSON: {e}", path.display()))?
        }
    };
    let entities = snapshot.entities(entities).map_err(|e| e.to_string())?;
    let request = snapshot
        .request(principal, action, resource, &context)
        .map_err(|e| e.to_string())?;
    let decision = snapshot.decide(&request, &entities);
    let explanation = args
        .explain
        .then(|| snapshot.explain(&request, &entities, &decision));
    Ok((decision, explanation))
}

fn test(args: &TestArgs) -> ExitCode {
    match load_or_report(&args.policy) {
        Some(snapshot) => policytest::command::run(&snapshot, args),
        None => ExitCode::FAILURE,
    }
}

fn prove(args: &ProveArgs) -> ExitCode {
    match load_or_report(&args.policy) {
        Some(snapshot) => crate::assurance::command::run(&snapshot, args),
        None => ExitCode::FAILURE,
    }
}

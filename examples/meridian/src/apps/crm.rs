//! The CRM of Meridian's two sales teams (served with axum).
//!
//! Record rule: accounts and deals are owned by a sales team. A caller whose
//! `team` claim is a sales team (`sales-north`, `sales-south`) sees and edits
//! only that team's pipeline; asking for another team's deal is refused with
//! 403 (the CRM's own ACL, not a missing scope). Everyone else who holds
//! `mcp:crm:read` (delivery, finance, executives) reads the whole pipeline;
//! only members of the owning team may write to a deal.

use std::sync::Mutex;

use cortex_backend::{Auth, Backend, BuildError, Ctx, Help, ToolError, ToolFn, tool};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{metric, snapshot};
use crate::firm::claim;

/// The CRM's data.
#[derive(Debug)]
pub struct Crm {
    accounts: Vec<Account>,
    deals: Mutex<Vec<Deal>>,
}

#[derive(Debug, Clone)]
struct Account {
    id: &'static str,
    name: &'static str,
    industry: &'static str,
    city: &'static str,
    team: &'static str,
}

/// Where a deal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// First contact.
    Lead,
    /// Need and budget confirmed.
    Qualified,
    /// A proposal was sent.
    Proposal,
    /// Terms under discussion.
    Negotiation,
    /// Signed.
    Won,
    /// Lost.
    Lost,
}

/// A deal with its call log.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Deal {
    /// Deal id, e.g. `D-1001`.
    id: String,
    /// The account's id.
    account_id: String,
    /// What is being sold.
    title: String,
    /// Current stage.
    stage: Stage,
    /// Value in euros.
    amount_eur: u64,
    /// The owning sales team.
    team: String,
    /// Employee id of the account executive.
    owner: String,
    /// Expected close date (YYYY-MM-DD).
    close_date: String,
    /// Calls logged on the deal, oldest first.
    calls: Vec<Call>,
}

/// One logged call.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Call {
    /// Who logged it (employee id).
    by: String,
    /// What was said.
    summary: String,
    /// The agreed next step, if any.
    next_step: Option<String>,
}

fn seed() -> Crm {
    let a = |id, name, industry, city, team| Account {
        id,
        name,
        industry,
        city,
        team,
    };
    let accounts = vec![
        a(
            "A-101",
            "Northwind Logistics",
            "logistics",
            "Hamburg",
            "sales-north",
        ),
        a(
            "A-102",
            "Harbor & Pine Insurance",
            "insurance",
            "Copenhagen",
            "sales-north",
        ),
        a("A-103", "Fjordline Energy", "energy", "Oslo", "sales-north"),
        a(
            "A-104",
            "Baltic Rail Group",
            "transport",
            "Gdansk",
            "sales-north",
        ),
        a(
            "A-105",
            "Greywater Utilities",
            "utilities",
            "Rotterdam",
            "sales-north",
        ),
        a("A-201", "Solano Foods", "food", "Valencia", "sales-south"),
        a(
            "A-202",
            "Costa Azul Hotels",
            "hospitality",
            "Nice",
            "sales-south",
        ),
        a(
            "A-203",
            "Ligure Shipping",
            "logistics",
            "Genoa",
            "sales-south",
        ),
        a(
            "A-204",
            "Atlas Pharma Iberia",
            "pharma",
            "Lisbon",
            "sales-south",
        ),
        a("A-205", "Meseta Bank", "banking", "Madrid", "sales-south"),
    ];
    let d =
        |id: &str, acc: &str, title: &str, stage, amount, team: &str, owner: &str, close: &str| {
            Deal {
                id: id.into(),
                account_id: acc.into(),
                title: title.into(),
                stage,
                amount_eur: amount,
                team: team.into(),
                owner: owner.into(),
                close_date: close.into(),
                calls: Vec::new(),
            }
        };
    use Stage::*;
    let deals = vec![
        d(
            "D-1001",
            "A-101",
            "Warehouse data platform",
            Negotiation,
            420_000,
            "sales-north",
            "e-007",
            "2026-12-18",
        ),
        d(
            "D-1002",
            "A-102",
            "Claims triage pilot",
            Proposal,
            95_000,
            "sales-north",
            "e-007",
            "2027-01-15",
        ),
        d(
            "D-1003",
            "A-103",
            "Grid telemetry audit",
            Qualified,
            160_000,
            "sales-north",
            "e-009",
            "2027-02-27",
        ),
        d(
            "D-1004",
            "A-104",
            "Timetable optimisation",
            Lead,
            240_000,
            "sales-north",
            "e-011",
            "2027-03-31",
        ),
        d(
            "D-1005",
            "A-105",
            "Security review",
            Won,
            48_000,
            "sales-north",
            "e-007",
            "2026-10-02",
        ),
        d(
            "D-2001",
            "A-201",
            "Supply chain dashboard",
            Proposal,
            130_000,
            "sales-south",
            "e-015",
            "2027-01-20",
        ),
        d(
            "D-2002",
            "A-202",
            "Booking engine rebuild",
            Negotiation,
            380_000,
            "sales-south",
            "e-015",
            "2026-12-12",
        ),
        d(
            "D-2003",
            "A-203",
            "Port logistics integration",
            Qualified,
            210_000,
            "sales-south",
            "e-017",
            "2027-02-10",
        ),
        d(
            "D-2004",
            "A-204",
            "GxP validation support",
            Lead,
            75_000,
            "sales-south",
            "e-019",
            "2027-04-01",
        ),
        d(
            "D-2005",
            "A-205",
            "Core banking assessment",
            Lost,
            300_000,
            "sales-south",
            "e-015",
            "2026-09-30",
        ),
    ];
    Crm {
        accounts,
        deals: Mutex::new(deals),
    }
}

/// The caller's sales team, when they are in one.
fn sales_team(ctx: &Ctx<Crm>) -> Option<&str> {
    claim(ctx.caller(), "team").filter(|t| t.starts_with("sales-"))
}

fn can_see(ctx: &Ctx<Crm>, team: &str) -> bool {
    sales_team(ctx).is_none_or(|own| own == team)
}

fn lock(crm: &Crm) -> std::sync::MutexGuard<'_, Vec<Deal>> {
    cortex_backend::sync::lock(&crm.deals)
}

/// Runs `f` on a deal the caller may see (and, with `write`, edit).
fn with_deal<T>(
    ctx: &Ctx<Crm>,
    id: &str,
    write: bool,
    f: impl FnOnce(&mut Deal) -> T,
) -> Result<T, ToolError> {
    let mut deals = lock(ctx.state());
    let deal = deals
        .iter_mut()
        .find(|d| d.id.eq_ignore_ascii_case(id))
        .ok_or_else(|| {
            ToolError::not_found(format!(
                "no deal `{id}`; list_deals shows the ids you can use"
            ))
        })?;
    let own = claim(ctx.caller(), "team");
    if !can_see(ctx, &deal.team) || (write && own != Some(deal.team.as_str())) {
        return Err(ToolError::denied(format!(
            "deal {} belongs to {}; only that team may {} it (you are in {})",
            deal.id,
            deal.team,
            if write { "edit" } else { "see" },
            own.unwrap_or("no team")
        )));
    }
    Ok(f(deal))
}

/// Arguments of `search_accounts`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchAccounts {
    /// Text matched against the account's name, industry or city; empty lists all.
    #[serde(default)]
    query: String,
}

/// An account with its open pipeline.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AccountRow {
    /// Account id, e.g. `A-101`.
    id: String,
    /// Company name.
    name: String,
    /// Industry.
    industry: String,
    /// City of the head office.
    city: String,
    /// Owning sales team.
    team: String,
    /// Sum of the deals not yet won or lost, in euros.
    open_pipeline_eur: u64,
}

/// Accounts the caller may see.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Accounts {
    /// Matching accounts.
    accounts: Vec<AccountRow>,
}

/// Search the accounts the caller may see (a sales rep: their own team's).
#[tool(scope = "mcp:crm:read", read_only, title = "Search accounts")]
async fn search_accounts(ctx: Ctx<Crm>, args: SearchAccounts) -> Result<Accounts, ToolError> {
    let q = args.query.to_lowercase();
    let deals = lock(ctx.state());
    let accounts = ctx
        .state()
        .accounts
        .iter()
        .filter(|a| can_see(&ctx, a.team))
        .filter(|a| {
            [a.name, a.industry, a.city]
                .iter()
                .any(|f| f.to_lowercase().contains(&q))
        })
        .map(|a| AccountRow {
            id: a.id.into(),
            name: a.name.into(),
            industry: a.industry.into(),
            city: a.city.into(),
            team: a.team.into(),
            open_pipeline_eur: deals
                .iter()
                .filter(|d| d.account_id == a.id && !matches!(d.stage, Stage::Won | Stage::Lost))
                .map(|d| d.amount_eur)
                .sum(),
        })
        .collect();
    Ok(Accounts { accounts })
}

/// Arguments of `list_deals`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListDeals {
    /// Only deals at this stage.
    stage: Option<Stage>,
}

/// Deals the caller may see.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Deals {
    /// Matching deals, without their call logs.
    deals: Vec<Deal>,
}

/// List the pipeline the caller may see, optionally at one stage.
#[tool(scope = "mcp:crm:read", read_only, title = "List deals")]
async fn list_deals(ctx: Ctx<Crm>, args: ListDeals) -> Result<Deals, ToolError> {
    let deals = lock(ctx.state())
        .iter()
        .filter(|d| can_see(&ctx, &d.team) && args.stage.is_none_or(|s| s == d.stage))
        .map(|d| Deal {
            calls: Vec::new(),
            ..d.clone()
        })
        .collect();
    Ok(Deals { deals })
}

/// Arguments naming one deal.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct DealId {
    /// Deal id, e.g. `D-1001`.
    deal_id: String,
}

/// One deal with its call log. Another sales team's deal is refused.
#[tool(scope = "mcp:crm:read", read_only, title = "Get a deal")]
async fn get_deal(ctx: Ctx<Crm>, args: DealId) -> Result<Deal, ToolError> {
    with_deal(&ctx, &args.deal_id, false, |d| d.clone())
}

/// Arguments of `log_call`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct LogCall {
    /// Deal id, e.g. `D-1001`.
    deal_id: String,
    /// What was discussed, one or two sentences.
    summary: String,
    /// The agreed next step.
    next_step: Option<String>,
}

/// Result of `log_call`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CallLogged {
    /// The deal.
    deal_id: String,
    /// How many calls the deal now has.
    calls_logged: usize,
}

async fn log_call(ctx: Ctx<Crm>, args: LogCall) -> Result<CallLogged, ToolError> {
    if args.summary.trim().is_empty() {
        return Err(ToolError::invalid(
            "`summary` is empty: say what was discussed",
        ));
    }
    let by = ctx.caller().sub.clone();
    with_deal(&ctx, &args.deal_id, true, |d| {
        d.calls.push(Call {
            by,
            summary: args.summary,
            next_step: args.next_step,
        });
        CallLogged {
            deal_id: d.id.clone(),
            calls_logged: d.calls.len(),
        }
    })
}

/// Arguments of `draft_proposal`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct DraftProposal {
    /// Deal id, e.g. `D-1002`.
    deal_id: String,
    /// Discount in percent, 0 to 15 (default 0).
    discount_percent: Option<u8>,
}

/// A proposal draft; the deal moves to `proposal` if it was earlier.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Proposal {
    /// The deal.
    deal_id: String,
    /// The deal's stage after drafting.
    stage: Stage,
    /// Price after discount, in euros.
    total_eur: u64,
    /// The draft text, to be reviewed before sending.
    text: String,
}

async fn draft_proposal(ctx: Ctx<Crm>, args: DraftProposal) -> Result<Proposal, ToolError> {
    let discount = u64::from(args.discount_percent.unwrap_or(0));
    if discount > 15 {
        return Err(ToolError::invalid(
            "`discount_percent` above 15 needs a partner's approval; use 0 to 15",
        ));
    }
    let accounts = &ctx.state().accounts;
    with_deal(&ctx, &args.deal_id, true, |d| {
        if matches!(d.stage, Stage::Lead | Stage::Qualified) {
            d.stage = Stage::Proposal;
        }
        let client = accounts
            .iter()
            .find(|a| a.id == d.account_id)
            .map_or("the client", |a| a.name);
        let total = d.amount_eur * (100 - discount) / 100;
        Proposal {
            deal_id: d.id.clone(),
            stage: d.stage,
            total_eur: total,
            text: format!(
                "Proposal for {client}: {}. Fixed price EUR {total} ({discount}% discount), \
                 valid 30 days, delivered by Meridian Partners. Expected start after {}.",
                d.title, d.close_date
            ),
        }
    })
}

fn help() -> Help {
    Help::new("Meridian's CRM: client accounts and the sales pipeline of the two sales teams (sales-north, sales-south).")
        .concept("account", "A client company, owned by one sales team (ids `A-1xx` north, `A-2xx` south).")
        .concept("deal", "An opportunity on an account, with a stage, a value in euros and a call log.")
        .concept("team rule", "A sales rep sees and edits only their own team's accounts and deals; others read all, and only the owning team writes.")
        .workflow("Follow up a deal", ["list_deals with stage=negotiation", "get_deal", "log_call with the outcome"])
        .workflow("Send a proposal", ["search_accounts", "list_deals", "draft_proposal", "log_call noting it was sent"])
        .convention("Amounts are whole euros. Dates are YYYY-MM-DD.")
        .limit("No email sending: draft_proposal returns text for a person to send.")
        .example("list_deals", json!({"stage": "proposal"}), json!({"deals": [{"id": "D-1002", "stage": "proposal", "amount_eur": 95000}]}))
        .example("log_call", json!({"deal_id": "D-1001", "summary": "Agreed scope", "next_step": "Send SoW"}), json!({"deal_id": "D-1001", "calls_logged": 1}))
}

/// The CRM backend.
pub fn backend(auth: Auth) -> Result<Backend<Crm>, BuildError> {
    Backend::builder("crm")
        .state(seed())
        .auth(auth)
        .tool(search_accounts)
        .tool(list_deals)
        .tool(get_deal)
        .tool(
            ToolFn::new("log_call")
                .scope("mcp:crm:write")
                .description("Log a call on one of your team's deals.")
                .handler(log_call),
        )
        .tool(
            ToolFn::new("draft_proposal")
                .scope("mcp:crm:write")
                .description(
                    "Draft a proposal for one of your team's deals (moves it to `proposal`).",
                )
                .handler(draft_proposal),
        )
        .help(help())
        .snapshot(|crm: std::sync::Arc<Crm>| async move {
            let deals = lock(&crm);
            let open: Vec<&Deal> = deals
                .iter()
                .filter(|d| !matches!(d.stage, Stage::Won | Stage::Lost))
                .collect();
            Ok(snapshot(
                "crm",
                "Sales pipeline",
                vec![
                    metric("open_deals", "Open deals", open.len() as i64, None),
                    metric(
                        "open_pipeline",
                        "Open pipeline",
                        open.iter().map(|d| d.amount_eur).sum::<u64>() as i64,
                        Some("EUR"),
                    ),
                    metric("accounts", "Accounts", crm.accounts.len() as i64, None),
                ],
            ))
        })
        .build()
}

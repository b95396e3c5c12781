//! Invoices and payments (served with actix-web).
//!
//! Record rules: without `mcp:billing:read` nothing is visible (the scope
//! gate). With it, finance (`cfo`, `accountant`) and executives (`ceo`,
//! `partner`) see every invoice; anyone else sees only the invoices of
//! projects they manage. Recording payments and sending reminders need
//! `mcp:billing:write` *and* a finance role.

use std::sync::Mutex;

use cortex_backend::{Auth, Backend, BuildError, Ctx, Help, ToolError, ToolFn, tool};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{metric, now_iso8601, snapshot};

/// The billing app's data.
#[derive(Debug)]
pub struct Billing {
    invoices: Mutex<Vec<Invoice>>,
}

/// Payment status of an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not yet due.
    Open,
    /// Past its due date and not fully paid.
    Overdue,
    /// Fully paid.
    Paid,
}

/// An invoice.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Invoice {
    /// Invoice number, e.g. `INV-2026-0311`.
    id: String,
    /// Client company.
    client: String,
    /// Project id (as in the docs app).
    project: String,
    /// Project manager (employee id).
    project_manager: String,
    /// Amount in euros, VAT excluded.
    amount_eur: u64,
    /// Paid so far, in euros.
    paid_eur: u64,
    /// Issue date (YYYY-MM-DD).
    issued: String,
    /// Due date (YYYY-MM-DD).
    due: String,
    /// Payment status today.
    status: Status,
    /// Reminders sent so far.
    reminders_sent: u32,
}

impl Invoice {
    fn refresh_status(&mut self, today: &str) {
        self.status = if self.paid_eur >= self.amount_eur {
            Status::Paid
        } else if self.due.as_str() < today {
            Status::Overdue
        } else {
            Status::Open
        };
    }
}

fn today() -> String {
    now_iso8601()[..10].to_string()
}

/// (id, client, project, project manager, amount, paid, issued, due).
type InvoiceRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    u64,
    u64,
    &'static str,
    &'static str,
);

fn seed() -> Billing {
    let rows: [InvoiceRow; 14] = [
        (
            "INV-2026-0288",
            "Northwind Logistics",
            "atlas",
            "e-098",
            84_000,
            84_000,
            "2026-08-31",
            "2026-09-30",
        ),
        (
            "INV-2026-0301",
            "Northwind Logistics",
            "atlas",
            "e-098",
            84_000,
            84_000,
            "2026-09-30",
            "2026-10-30",
        ),
        (
            "INV-2026-0317",
            "Northwind Logistics",
            "atlas",
            "e-098",
            84_000,
            40_000,
            "2026-10-31",
            "2026-11-30",
        ),
        (
            "INV-2026-0290",
            "Harbor & Pine Insurance",
            "beacon",
            "e-098",
            31_667,
            31_667,
            "2026-09-01",
            "2026-10-01",
        ),
        (
            "INV-2026-0309",
            "Harbor & Pine Insurance",
            "beacon",
            "e-098",
            31_667,
            0,
            "2026-10-01",
            "2026-10-31",
        ),
        (
            "INV-2026-0293",
            "Costa Azul Hotels",
            "cedar",
            "e-099",
            126_000,
            126_000,
            "2026-09-15",
            "2026-10-15",
        ),
        (
            "INV-2026-0312",
            "Costa Azul Hotels",
            "cedar",
            "e-099",
            126_000,
            0,
            "2026-10-15",
            "2026-11-14",
        ),
        (
            "INV-2026-0325",
            "Costa Azul Hotels",
            "cedar",
            "e-099",
            126_000,
            0,
            "2026-11-15",
            "2026-12-15",
        ),
        (
            "INV-2026-0319",
            "Fjordline Energy",
            "delta",
            "e-100",
            52_000,
            0,
            "2026-11-01",
            "2026-12-01",
        ),
        (
            "INV-2026-0298",
            "Solano Foods",
            "ember",
            "e-101",
            43_500,
            43_500,
            "2026-09-20",
            "2026-10-20",
        ),
        (
            "INV-2026-0315",
            "Solano Foods",
            "ember",
            "e-101",
            43_500,
            20_000,
            "2026-10-20",
            "2026-11-19",
        ),
        (
            "INV-2026-0330",
            "Solano Foods",
            "ember",
            "e-101",
            43_500,
            0,
            "2026-11-20",
            "2026-12-20",
        ),
        (
            "INV-2026-0276",
            "Greywater Utilities",
            "atlas",
            "e-098",
            48_000,
            48_000,
            "2026-07-31",
            "2026-08-30",
        ),
        (
            "INV-2026-0321",
            "Baltic Rail Group",
            "delta",
            "e-100",
            18_000,
            0,
            "2026-11-05",
            "2026-12-05",
        ),
    ];
    let today = today();
    let invoices = rows
        .into_iter()
        .map(|(id, client, project, pm, amount, paid, issued, due)| {
            let mut i = Invoice {
                id: id.into(),
                client: client.into(),
                project: project.into(),
                project_manager: pm.into(),
                amount_eur: amount,
                paid_eur: paid,
                issued: issued.into(),
                due: due.into(),
                status: Status::Open,
                reminders_sent: 0,
            };
            i.refresh_status(&today);
            i
        })
        .collect();
    Billing {
        invoices: Mutex::new(invoices),
    }
}

const FINANCE: [&str; 2] = ["cfo", "accountant"];

fn sees_all(ctx: &Ctx<Billing>) -> bool {
    matches!(
        ctx.caller().role.as_deref(),
        Some("cfo" | "accountant" | "ceo" | "partner")
    )
}

fn lock(b: &Billing) -> std::sync::MutexGuard<'_, Vec<Invoice>> {
    cortex_backend::sync::lock(&b.invoices)
}

/// Runs `f` on an invoice the caller may see.
fn with_invoice<T>(
    ctx: &Ctx<Billing>,
    id: &str,
    f: impl FnOnce(&mut Invoice) -> Result<T, ToolError>,
) -> Result<T, ToolError> {
    let mut invoices = lock(ctx.state());
    let invoice = invoices
        .iter_mut()
        .find(|i| i.id.eq_ignore_ascii_case(id))
        .ok_or_else(|| {
            ToolError::not_found(format!(
                "no invoice `{id}`; list_invoices shows the numbers"
            ))
        })?;
    if !sees_all(ctx) && invoice.project_manager != ctx.caller().sub {
        return Err(ToolError::denied(format!(
            "invoice {} belongs to project {}, which you do not manage; finance can share it",
            invoice.id, invoice.project
        )));
    }
    f(invoice)
}

/// Arguments of `list_invoices`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListInvoices {
    /// Only invoices in this status.
    status: Option<Status>,
    /// Only this client (part of the name is enough).
    client: Option<String>,
}

/// Invoices the caller may see.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Invoices {
    /// The invoices, newest first.
    invoices: Vec<Invoice>,
    /// Sum still to be collected on them, in euros.
    outstanding_eur: u64,
}

/// List invoices (finance and executives: all; others: the projects they manage).
#[tool(scope = "mcp:billing:read", read_only, title = "List invoices")]
async fn list_invoices(ctx: Ctx<Billing>, args: ListInvoices) -> Result<Invoices, ToolError> {
    let client = args.client.unwrap_or_default().to_lowercase();
    let mut invoices: Vec<Invoice> = lock(ctx.state())
        .iter()
        .filter(|i| sees_all(&ctx) || i.project_manager == ctx.caller().sub)
        .filter(|i| {
            args.status.is_none_or(|s| s == i.status) && i.client.to_lowercase().contains(&client)
        })
        .cloned()
        .collect();
    invoices.sort_by(|a, b| b.issued.cmp(&a.issued));
    let outstanding_eur = invoices
        .iter()
        .map(|i| i.amount_eur - i.paid_eur.min(i.amount_eur))
        .sum();
    Ok(Invoices {
        invoices,
        outstanding_eur,
    })
}

/// Arguments naming one invoice.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct InvoiceId {
    /// Invoice number, e.g. `INV-2026-0312`.
    invoice_id: String,
}

/// One invoice with its payment status.
#[tool(scope = "mcp:billing:read", read_only, title = "Get an invoice")]
async fn get_invoice(ctx: Ctx<Billing>, args: InvoiceId) -> Result<Invoice, ToolError> {
    with_invoice(&ctx, &args.invoice_id, |i| Ok(i.clone()))
}

/// Arguments of `record_payment`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RecordPayment {
    /// Invoice number.
    invoice_id: String,
    /// Amount received, in euros.
    amount_eur: u64,
}

async fn record_payment(ctx: Ctx<Billing>, args: RecordPayment) -> Result<Invoice, ToolError> {
    ctx.require_role(&FINANCE)?;
    if args.amount_eur == 0 {
        return Err(ToolError::invalid("`amount_eur` must be above 0"));
    }
    with_invoice(&ctx, &args.invoice_id, |i| {
        let left = i.amount_eur.saturating_sub(i.paid_eur);
        if args.amount_eur > left {
            return Err(ToolError::invalid(format!(
                "{} has only EUR {left} outstanding; record at most that",
                i.id
            )));
        }
        i.paid_eur += args.amount_eur;
        i.refresh_status(&today());
        Ok(i.clone())
    })
}

/// The reminder that was sent.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Reminder {
    /// Invoice number.
    invoice_id: String,
    /// Reminders sent so far, this one included.
    reminders_sent: u32,
    /// The reminder's text.
    text: String,
}

async fn send_reminder(ctx: Ctx<Billing>, args: InvoiceId) -> Result<Reminder, ToolError> {
    ctx.require_role(&FINANCE)?;
    with_invoice(&ctx, &args.invoice_id, |i| {
        if i.status != Status::Overdue {
            return Err(ToolError::invalid(format!(
                "{} is not overdue (status {:?}); reminders are for overdue invoices",
                i.id, i.status
            )));
        }
        i.reminders_sent += 1;
        Ok(Reminder {
            invoice_id: i.id.clone(),
            reminders_sent: i.reminders_sent,
            text: format!(
                "Dear {}, invoice {} (EUR {}) was due on {}; EUR {} is still open. Kind regards, Meridian Partners finance.",
                i.client,
                i.id,
                i.amount_eur,
                i.due,
                i.amount_eur - i.paid_eur
            ),
        })
    })
}

fn help() -> Help {
    Help::new("Meridian's billing: client invoices per project and their payment status, for finance, executives and project managers.")
        .concept("invoice", "A monthly invoice of a project (`INV-<year>-<n>`), with an amount, payments received and a due date.")
        .concept("status", "`open` until the due date, then `overdue` until fully paid, then `paid`.")
        .concept("visibility", "Finance and executives see every invoice; a project manager sees their projects' invoices; writing needs a finance role.")
        .workflow("Chase late payers", ["list_invoices status=overdue", "get_invoice", "send_reminder"])
        .workflow("Book a bank transfer", ["list_invoices client=<name>", "record_payment"])
        .convention("Amounts are whole euros, VAT excluded. Dates are YYYY-MM-DD.")
        .limit("No credit notes or new invoices: those come from the accounting system.")
        .example("list_invoices", json!({"status": "overdue"}), json!({"invoices": [{"id": "INV-2026-0312", "status": "overdue"}], "outstanding_eur": 126000}))
}

/// The billing backend.
pub fn backend(auth: Auth) -> Result<Backend<Billing>, BuildError> {
    Backend::builder("billing")
        .state(seed())
        .auth(auth)
        .tool(list_invoices)
        .tool(get_invoice)
        .tool(
            ToolFn::new("record_payment")
                .scope("mcp:billing:write")
                .description("Record a payment received on an invoice (finance roles).")
                .handler(record_payment),
        )
        .tool(
            ToolFn::new("send_reminder")
                .scope("mcp:billing:write")
                .description("Send a payment reminder for an overdue invoice (finance roles).")
                .handler(send_reminder),
        )
        .help(help())
        .snapshot(|b: std::sync::Arc<Billing>| async move {
            let invoices = lock(&b);
            let overdue: Vec<&Invoice> = invoices
                .iter()
                .filter(|i| i.status == Status::Overdue)
                .collect();
            let outstanding: u64 = invoices
                .iter()
                .map(|i| i.amount_eur.saturating_sub(i.paid_eur))
                .sum();
            Ok(snapshot(
                "billing",
                "Receivables",
                vec![
                    metric(
                        "outstanding",
                        "Outstanding",
                        outstanding as i64,
                        Some("EUR"),
                    ),
                    metric(
                        "overdue_invoices",
                        "Overdue invoices",
                        overdue.len() as i64,
                        None,
                    ),
                    metric("invoices", "Invoices", invoices.len() as i64, None),
                ],
            ))
        })
        .build()
}

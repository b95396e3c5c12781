//! A small inventory backend served by axum next to an app route.
//!
//! ```text
//! cargo run -p cortex-backend-axum --example axum_backend
//! ```
//!
//! It prints `listening on http://ADDR` as its first line on stdout, then
//! serves `POST /api/cortex/backend` (the Cortex contract) and `GET /health`
//! (the app's own route). Settings come from the environment:
//!
//! | variable | meaning |
//! |---|---|
//! | `CORTEX_LISTEN` | address to listen on (default `127.0.0.1:0`, a free port) |
//! | `CORTEX_TECHNICAL_TOKENS` | comma-separated technical tokens for the gateway's discovery calls |
//! | `OAUTH_ISSUER` | the OAuth issuer of user tokens (unset: no user tokens accepted) |
//! | `OAUTH_AUDIENCE` | the audience user tokens must carry (required with an issuer) |
//! | `OAUTH_JWKS_URL` | the issuer's JWKS (default: discovered from its metadata) |
//!
//! and the other variables of `cortex_backend::Auth::from_env`.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use axum::{Router, extract::State, routing::get};
use cortex_backend::{
    Auth, Backend, Ctx, Help, ToolError, ToolFn,
    contract::{Metric, MetricValue, Snapshot},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The app's state: stock per SKU.
#[derive(Clone)]
struct Inventory {
    stock: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl Inventory {
    fn demo() -> Self {
        let stock = [("desk-oak", 12), ("chair-mesh", 40), ("lamp-arc", 0)]
            .into_iter()
            .map(|(sku, n)| (sku.to_string(), n))
            .collect();
        Self {
            stock: Arc::new(Mutex::new(stock)),
        }
    }

    fn stock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u32>> {
        cortex_backend::sync::lock(&self.stock)
    }
}

#[derive(Deserialize, JsonSchema)]
struct StockQuery {
    /// Only SKUs containing this text (all when absent).
    filter: Option<String>,
}

#[derive(Serialize, JsonSchema)]
struct StockLevel {
    sku: String,
    available: u32,
}

#[derive(Serialize, JsonSchema)]
struct StockList {
    items: Vec<StockLevel>,
}

/// Read-only: current stock levels.
async fn list_stock(ctx: Ctx<Inventory>, args: StockQuery) -> Result<StockList, ToolError> {
    let filter = args.filter.unwrap_or_default();
    let items = ctx
        .state()
        .stock()
        .iter()
        .filter(|(sku, _)| sku.contains(&filter))
        .map(|(sku, n)| StockLevel {
            sku: sku.clone(),
            available: *n,
        })
        .collect();
    Ok(StockList { items })
}

#[derive(Deserialize, JsonSchema)]
struct Reserve {
    /// The SKU to reserve, as listed by `list_stock`.
    sku: String,
    /// How many units (1 to 10).
    quantity: u32,
}

#[derive(Serialize, JsonSchema)]
struct Reservation {
    sku: String,
    reserved: u32,
    remaining: u32,
}

async fn reserve(ctx: Ctx<Inventory>, args: Reserve) -> Result<Reservation, ToolError> {
    if !(1..=10).contains(&args.quantity) {
        return Err(ToolError::invalid(
            "quantity must be between 1 and 10; larger orders go through purchasing",
        ));
    }
    let mut stock = ctx.state().stock();
    let Some(available) = stock.get_mut(&args.sku) else {
        return Err(ToolError::not_found(format!(
            "no SKU `{}`; call list_stock for the known SKUs",
            args.sku
        )));
    };
    if *available < args.quantity {
        return Err(ToolError::invalid(format!(
            "only {available} units of `{}` are available",
            args.sku
        )));
    }
    *available -= args.quantity;
    Ok(Reservation {
        sku: args.sku,
        reserved: args.quantity,
        remaining: *available,
    })
}

async fn snapshot(state: Arc<Inventory>) -> Result<Snapshot, ToolError> {
    let stock = state.stock();
    let units: u32 = stock.values().sum();
    let out = stock.values().filter(|n| **n == 0).count();
    Ok(Snapshot {
        backend: "inventory".into(),
        generated_at: now_iso8601(),
        title: "Inventory".into(),
        headline: vec![
            Metric::new("units", "Units in stock", MetricValue::Number(units.into())),
            Metric::new(
                "out_of_stock",
                "SKUs out of stock",
                MetricValue::Number(out.into()),
            ),
        ],
        sections: None,
        hint: Some("Reserve with `reserve`; stock levels with `list_stock`.".into()),
    })
}

fn now_iso8601() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

async fn health(State(inventory): State<Inventory>) -> String {
    format!("ok, {} SKUs", inventory.stock().len())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let inventory = Inventory::demo();
    let backend = Backend::builder("inventory")
        .state(inventory.clone())
        .auth(Auth::from_env()?)
        .tool(
            cortex_backend::Tool::new(
                "list_stock",
                "mcp:inventory:read",
                "List stock levels per SKU, optionally filtered by a text in the SKU.",
                list_stock,
            )
            .read_only(),
        )
        .tool(
            ToolFn::new("reserve")
                .scope("mcp:inventory:write")
                .description("Reserve 1 to 10 units of a SKU; fails when not enough are available.")
                .handler(reserve),
        )
        .help(
            Help::new("Stock levels and reservations of the furniture warehouse.")
                .concept("SKU", "a product reference such as `desk-oak`")
                .workflow("Reserve an item", ["list_stock", "reserve"])
                .limit("No purchasing: reservations above 10 units go through purchasing.")
                .example(
                    "reserve",
                    json!({"sku": "desk-oak", "quantity": 2}),
                    json!({"sku": "desk-oak", "reserved": 2, "remaining": 10}),
                ),
        )
        .snapshot(snapshot)
        .build()?;

    let app = Router::new()
        .route("/health", get(health))
        .merge(cortex_backend_axum::router(backend))
        .with_state(inventory);

    let listen = std::env::var("CORTEX_LISTEN").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} (CORTEX_LISTEN): {e}"))?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

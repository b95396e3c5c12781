//! A small meeting-room booking backend served by actix-web next to an app
//! service.
//!
//! ```text
//! cargo run -p cortex-backend-actix --example actix_backend
//! ```
//!
//! It prints `listening on http://ADDR` as its first line on stdout, then
//! serves `POST /api/cortex/backend` (the Cortex contract) and `GET /health`
//! (the app's own service). Settings come from the environment:
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
    io::Write as _,
    sync::{Arc, Mutex},
};

use actix_web::{App, HttpServer, Responder, get, web};
use cortex_backend::{
    Auth, Backend, Ctx, Help, Tool, ToolError, ToolFn,
    contract::{Metric, MetricValue, Snapshot},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

const ROOMS: [&str; 3] = ["atlas", "borealis", "cirrus"];

/// One booking: a room for a whole hour of a day.
#[derive(Clone, Serialize, JsonSchema)]
struct Booking {
    room: String,
    /// `YYYY-MM-DD`.
    day: String,
    /// 8 to 18.
    hour: u8,
    booked_by: String,
}

/// The app's state: the bookings.
#[derive(Clone, Default)]
struct Bookings {
    all: Arc<Mutex<Vec<Booking>>>,
}

impl Bookings {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Booking>> {
        cortex_backend::sync::lock(&self.all)
    }
}

#[derive(Deserialize, JsonSchema)]
struct DayQuery {
    /// The day, `YYYY-MM-DD`.
    day: String,
}

#[derive(Serialize, JsonSchema)]
struct FreeSlots {
    day: String,
    /// Free hours per room.
    free: Vec<RoomHours>,
}

#[derive(Serialize, JsonSchema)]
struct RoomHours {
    room: String,
    hours: Vec<u8>,
}

/// Read-only: the free hours of every room on a day.
async fn free_slots(ctx: Ctx<Bookings>, args: DayQuery) -> Result<FreeSlots, ToolError> {
    let bookings = ctx.state().lock();
    let free = ROOMS
        .iter()
        .map(|room| RoomHours {
            room: (*room).to_string(),
            hours: (8..=18)
                .filter(|h| {
                    !bookings
                        .iter()
                        .any(|b| b.room == *room && b.day == args.day && b.hour == *h)
                })
                .collect(),
        })
        .collect();
    Ok(FreeSlots {
        day: args.day,
        free,
    })
}

#[derive(Deserialize, JsonSchema)]
struct BookRoom {
    /// One of `atlas`, `borealis`, `cirrus`.
    room: String,
    /// The day, `YYYY-MM-DD`.
    day: String,
    /// The hour, 8 to 18.
    hour: u8,
}

async fn book_room(ctx: Ctx<Bookings>, args: BookRoom) -> Result<Booking, ToolError> {
    if !ROOMS.contains(&args.room.as_str()) {
        return Err(ToolError::not_found(format!(
            "no room `{}`; the rooms are {}",
            args.room,
            ROOMS.join(", ")
        )));
    }
    if !(8..=18).contains(&args.hour) {
        return Err(ToolError::invalid("rooms are bookable from 8 to 18 only"));
    }
    let mut bookings = ctx.state().lock();
    if bookings
        .iter()
        .any(|b| b.room == args.room && b.day == args.day && b.hour == args.hour)
    {
        return Err(ToolError::invalid(format!(
            "{} is already booked on {} at {}; call free_slots for free hours",
            args.room, args.day, args.hour
        )));
    }
    let booking = Booking {
        room: args.room,
        day: args.day,
        hour: args.hour,
        booked_by: ctx.caller().sub.clone(),
    };
    bookings.push(booking.clone());
    Ok(booking)
}

async fn snapshot(state: Arc<Bookings>) -> Result<Snapshot, ToolError> {
    let total = state.lock().len();
    Ok(Snapshot {
        backend: "rooms".into(),
        generated_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        title: "Meeting rooms".into(),
        headline: vec![
            Metric::new("rooms", "Rooms", MetricValue::Number(ROOMS.len().into())),
            Metric::new("bookings", "Bookings", MetricValue::Number(total.into())),
        ],
        sections: None,
        hint: Some("Find a slot with `free_slots`, then `book_room`.".into()),
    })
}

#[get("/health")]
async fn health(bookings: web::Data<Bookings>) -> impl Responder {
    format!("ok, {} bookings", bookings.lock().len())
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let bookings = Bookings::default();
    let backend = Backend::builder("rooms")
        .state(bookings.clone())
        .auth(Auth::from_env()?)
        .tool(
            Tool::new(
                "free_slots",
                "mcp:rooms:read",
                "Free hours (8 to 18) of every meeting room on a day.",
                free_slots,
            )
            .read_only(),
        )
        .tool(
            ToolFn::new("book_room")
                .scope("mcp:rooms:write")
                .description("Book a meeting room for one hour; fails when the slot is taken.")
                .handler(book_room),
        )
        .help(
            Help::new("Meeting-room bookings of the office.")
                .concept("slot", "a room for one whole hour of one day")
                .workflow("Book a room", ["free_slots", "book_room"])
                .convention("Days are YYYY-MM-DD; hours are 8 to 18, local time.")
                .example(
                    "book_room",
                    json!({"room": "atlas", "day": "2026-12-01", "hour": 10}),
                    json!({"room": "atlas", "day": "2026-12-01", "hour": 10, "booked_by": "ana"}),
                ),
        )
        .snapshot(snapshot)
        .build()?;

    let listen = std::env::var("CORTEX_LISTEN").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = std::net::TcpListener::bind(&listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} (CORTEX_LISTEN): {e}"))?;
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(bookings.clone()))
            .service(health)
            .configure(cortex_backend_actix::configure(backend.clone()))
    })
    .listen(listener)?;
    println!("listening on http://{addr}");
    std::io::stdout().flush()?;
    server.run().await?;
    Ok(())
}

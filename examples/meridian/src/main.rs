//! The Meridian worked example (coming: see the Meridian issue).

fn main() {
    println!(
        "Meridian demo: coming. It will start a dev issuer, four apps and the gateway in one process."
    );
}

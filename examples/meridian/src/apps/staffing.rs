//! People, availability, performance reviews and HR policies (served with
//! actix-web).
//!
//! Record rules: anyone with `mcp:staffing:read` sees work profiles and
//! availability. Personal data (phone, home city, salary band, leave
//! balance) is shown to the employee themself and to HR (role `hr`) only;
//! asking for another person's is refused with 403. A review may be booked
//! only by the employee's manager or by HR.

use std::sync::Mutex;

use cortex_backend::{Auth, Backend, BuildError, Ctx, Help, ToolError, ToolFn, tool};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{metric, snapshot};
use crate::firm::{Employee, directory};

/// The staffing app's data.
#[derive(Debug)]
pub struct Staffing {
    people: Vec<Employee>,
    reviews: Mutex<Vec<Review>>,
}

/// A booked performance review.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Review {
    /// Review id, e.g. `R-3`.
    id: String,
    /// The employee reviewed.
    employee_id: String,
    /// The reviewer (employee id).
    reviewer: String,
    /// Date (YYYY-MM-DD).
    date: String,
    /// Who booked it.
    booked_by: String,
}

/// Percent of the week already allocated to projects, for weeks 1 to 4 from
/// now. Deterministic from the employee number.
fn allocation(e: &Employee, week: u8) -> u8 {
    let n: u32 = e.id[2..].parse().unwrap_or(0);
    [0u8, 20, 50, 80, 100, 100][((n * 7 + u32::from(week) * 3) % 6) as usize]
}

/// Personal data, for the employee and HR only.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Personal {
    /// Mobile phone.
    phone: String,
    /// Home city.
    home_city: String,
    /// Salary band, `B1` (junior) to `B6` (partner).
    salary_band: String,
    /// Days of leave left this year.
    leave_days_left: u8,
}

fn personal(e: &Employee) -> Personal {
    let n: u32 = e.id[2..].parse().unwrap_or(0);
    let cities = [
        "Hamburg",
        "Amsterdam",
        "Lisbon",
        "Copenhagen",
        "Lyon",
        "Vienna",
    ];
    let band = match e.role {
        "ceo" | "partner" | "cfo" => 6,
        "project_manager" | "hr" => 4,
        _ => 2 + n % 2,
    };
    Personal {
        phone: format!(
            "+49 151 {:04} {:04}",
            1000 + n * 37 % 9000,
            2000 + n * 53 % 8000
        ),
        home_city: cities[n as usize % cities.len()].into(),
        salary_band: format!("B{band}"),
        leave_days_left: (n * 11 % 28) as u8,
    }
}

fn person<'a>(s: &'a Staffing, id: &str) -> Result<&'a Employee, ToolError> {
    s.people
        .iter()
        .find(|e| e.id.eq_ignore_ascii_case(id))
        .ok_or_else(|| {
            ToolError::not_found(format!("no employee `{id}`; ids run from e-001 to e-140"))
        })
}

fn is_hr(ctx: &Ctx<Staffing>) -> bool {
    ctx.caller().role.as_deref() == Some("hr")
}

/// Arguments of `check_availability`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CheckAvailability {
    /// A skill to match, e.g. `rust`, `cloud`, `planning`.
    skill: Option<String>,
    /// Week from now, 1 to 4 (default 1).
    week: Option<u8>,
    /// Only people with at least this many percent free (default 50).
    min_free_percent: Option<u8>,
}

/// A person with free capacity (work data only).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Available {
    /// Employee id.
    id: String,
    /// Name.
    name: String,
    /// Job title.
    title: String,
    /// Skills.
    skills: Vec<String>,
    /// Percent of the week still free.
    free_percent: u8,
}

/// Who is free in a given week.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Availability {
    /// The week asked for.
    week: u8,
    /// Matching people, most free first.
    people: Vec<Available>,
}

/// Find people with free capacity in a week, optionally with a skill.
#[tool(scope = "mcp:staffing:read", read_only, title = "Check availability")]
async fn check_availability(
    ctx: Ctx<Staffing>,
    args: CheckAvailability,
) -> Result<Availability, ToolError> {
    let week = args.week.unwrap_or(1);
    if !(1..=4).contains(&week) {
        return Err(ToolError::invalid("`week` must be 1 to 4 (weeks from now)"));
    }
    let min_free = args.min_free_percent.unwrap_or(50);
    let skill = args.skill.unwrap_or_default().to_lowercase();
    let mut people: Vec<Available> = ctx
        .state()
        .people
        .iter()
        .filter(|e| skill.is_empty() || e.skills.iter().any(|s| *s == skill))
        .map(|e| (e, 100 - allocation(e, week)))
        .filter(|(_, free)| *free >= min_free)
        .map(|(e, free)| Available {
            id: e.id.clone(),
            name: e.name.clone(),
            title: e.title.into(),
            skills: e.skills.iter().map(|s| (*s).into()).collect(),
            free_percent: free,
        })
        .collect();
    people.sort_by(|a, b| b.free_percent.cmp(&a.free_percent).then(a.id.cmp(&b.id)));
    Ok(Availability { week, people })
}

/// Arguments of `get_employee`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetEmployee {
    /// Employee id, e.g. `e-042`.
    employee_id: String,
    /// Also return personal data (yourself, or anyone if you are in HR).
    #[serde(default)]
    include_personal: bool,
}

/// An employee's profile.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Profile {
    /// Employee id.
    id: String,
    /// Name.
    name: String,
    /// Work email.
    email: String,
    /// Department.
    department: String,
    /// Team.
    team: String,
    /// Job title.
    title: String,
    /// Manager (employee id).
    manager: Option<String>,
    /// Allocation in percent for weeks 1 to 4.
    allocation_percent: Vec<u8>,
    /// Personal data, when asked for and allowed.
    personal: Option<Personal>,
}

/// An employee's work profile; personal data only for yourself or HR.
#[tool(scope = "mcp:staffing:read", read_only, title = "Get an employee")]
async fn get_employee(ctx: Ctx<Staffing>, args: GetEmployee) -> Result<Profile, ToolError> {
    let e = person(ctx.state(), &args.employee_id)?;
    let personal = if args.include_personal {
        if e.id != ctx.caller().sub && !is_hr(&ctx) {
            return Err(ToolError::denied(format!(
                "personal data of {} is visible to them and to HR only; ask without include_personal",
                e.id
            )));
        }
        Some(personal(e))
    } else {
        None
    };
    Ok(Profile {
        id: e.id.clone(),
        name: e.name.clone(),
        email: e.email.clone(),
        department: e.department.into(),
        team: e.team.into(),
        title: e.title.into(),
        manager: e.manager.clone(),
        allocation_percent: (1..=4).map(|w| allocation(e, w)).collect(),
        personal,
    })
}

/// Arguments of `list_hr_policies`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListPolicies {
    /// A word to match in the title or text, e.g. `leave`.
    #[serde(default)]
    topic: String,
}

/// An HR policy.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Policy {
    /// Title.
    title: String,
    /// The rule, in short.
    text: String,
}

/// HR policies.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Policies {
    /// Matching policies.
    policies: Vec<Policy>,
}

const POLICIES: [(&str, &str); 5] = [
    (
        "Annual leave",
        "28 days a year; up to 5 carry over to March 31 of the next year.",
    ),
    (
        "Remote work",
        "Up to 3 days a week remote; client-site days agreed with the project manager.",
    ),
    (
        "Performance reviews",
        "Twice a year, booked by the manager or HR, at least 2 weeks ahead.",
    ),
    (
        "Expenses",
        "Client travel is billed to the project; receipts within 30 days.",
    ),
    (
        "Parental leave",
        "20 weeks fully paid for every parent, in up to 3 blocks.",
    ),
];

/// List HR policies, optionally about one topic.
#[tool(scope = "mcp:staffing:read", read_only, title = "HR policies")]
async fn list_hr_policies(_ctx: Ctx<Staffing>, args: ListPolicies) -> Result<Policies, ToolError> {
    let topic = args.topic.to_lowercase();
    let policies = POLICIES
        .iter()
        .filter(|(t, x)| t.to_lowercase().contains(&topic) || x.to_lowercase().contains(&topic))
        .map(|(t, x)| Policy {
            title: (*t).into(),
            text: (*x).into(),
        })
        .collect();
    Ok(Policies { policies })
}

/// Arguments of `book_review`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct BookReview {
    /// The employee to review.
    employee_id: String,
    /// Date (YYYY-MM-DD), at least two weeks ahead by policy.
    date: String,
    /// The reviewer (default: the employee's manager).
    reviewer: Option<String>,
}

async fn book_review(ctx: Ctx<Staffing>, args: BookReview) -> Result<Review, ToolError> {
    let e = person(ctx.state(), &args.employee_id)?;
    let me = ctx.caller().sub.clone();
    if e.manager.as_deref() != Some(me.as_str()) && !is_hr(&ctx) {
        return Err(ToolError::denied(format!(
            "only {}'s manager or HR may book their review",
            e.id
        )));
    }
    let valid_date = args.date.len() == 10
        && args.date.chars().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    if !valid_date {
        return Err(ToolError::invalid("`date` must be YYYY-MM-DD"));
    }
    let reviewer = match args.reviewer {
        Some(r) => person(ctx.state(), &r)?.id.clone(),
        None => e.manager.clone().unwrap_or_else(|| me.clone()),
    };
    let mut reviews = cortex_backend::sync::lock(&ctx.state().reviews);
    let review = Review {
        id: format!("R-{}", reviews.len() + 1),
        employee_id: e.id.clone(),
        reviewer,
        date: args.date,
        booked_by: me,
    };
    reviews.push(review.clone());
    Ok(review)
}

fn help() -> Help {
    Help::new("Meridian's staffing: who works here, who is free for a project, performance reviews and HR policies.")
        .concept("employee", "One of Meridian's 140 people, `e-001` to `e-140`, with a team, a title, skills and a manager.")
        .concept("allocation", "Percent of a week already booked on projects, for the next 4 weeks.")
        .concept("personal data", "Phone, home city, salary band, leave: visible to the person and HR only.")
        .workflow("Staff a project", ["check_availability skill=rust week=2", "get_employee", "ask the project manager to add them"])
        .workflow("Prepare a review", ["list_hr_policies topic=review", "get_employee", "book_review"])
        .convention("Weeks are counted from now, 1 to 4. Dates are YYYY-MM-DD.")
        .limit("No salary changes and no leave requests: those go through HR in person.")
        .example("check_availability", json!({"skill": "cloud", "week": 1}), json!({"week": 1, "people": [{"id": "e-067", "free_percent": 100}]}))
}

/// The staffing backend.
pub fn backend(auth: Auth) -> Result<Backend<Staffing>, BuildError> {
    Backend::builder("staffing")
        .state(Staffing {
            people: directory(),
            reviews: Mutex::new(Vec::new()),
        })
        .auth(auth)
        .tool(check_availability)
        .tool(get_employee)
        .tool(list_hr_policies)
        .tool(
            ToolFn::new("book_review")
                .scope("mcp:staffing:write")
                .description("Book a performance review (the employee's manager or HR).")
                .handler(book_review),
        )
        .help(help())
        .snapshot(|s: std::sync::Arc<Staffing>| async move {
            let free = s.people.iter().filter(|e| allocation(e, 1) <= 50).count();
            let reviews = s.reviews.lock().map_or(0, |r| r.len());
            Ok(snapshot(
                "staffing",
                "People and capacity",
                vec![
                    metric("headcount", "Headcount", s.people.len() as i64, None),
                    metric(
                        "free_next_week",
                        "Half free or more next week",
                        free as i64,
                        None,
                    ),
                    metric("reviews_booked", "Reviews booked", reviews as i64, None),
                ],
            ))
        })
        .build()
}

//! Meridian Partners, the fictional firm: a 140-person engineering and
//! consulting company. The directory is generated deterministically, so
//! every run (and every test) sees the same people.
//!
//! The four demo personas are fixed rows of the directory; their tokens
//! carry these claims (see [`Persona::claims`]):
//!
//! | claim | meaning | used by |
//! |---|---|---|
//! | `sub` | employee id, `e-001` to `e-140` | every app (membership, ownership) |
//! | `email`, `name` | the person | display, audit |
//! | `role` | `sales_rep`, `project_manager`, `cfo`, `ceo`, `hr`, `accountant`, `consultant`, ... | billing and staffing rules |
//! | `team` | `sales-north`, `sales-south`, `delivery`, `finance`, `people`, `exec`, ... | CRM pipeline ownership |
//! | `scope` | space-separated `mcp:<domain>:<action>` | the gateway and every app |

use serde_json::{Value, json};

/// One employee of the firm.
#[derive(Debug, Clone)]
pub struct Employee {
    /// `e-001` to `e-140`.
    pub id: String,
    /// Full name.
    pub name: String,
    /// Work email.
    pub email: String,
    /// Department (`Sales`, `Delivery`, ...).
    pub department: &'static str,
    /// Team, as carried by the token's `team` claim.
    pub team: &'static str,
    /// Role, as carried by the token's `role` claim.
    pub role: &'static str,
    /// Job title.
    pub title: &'static str,
    /// Skills used for staffing.
    pub skills: Vec<&'static str>,
    /// The employee id of their manager (none for the CEO).
    pub manager: Option<String>,
}

const FIRST: [&str; 36] = [
    "Aisha", "Bruno", "Carmen", "Daniel", "Elif", "Felix", "Greta", "Hugo", "Ines", "Jonas",
    "Keiko", "Luca", "Maya", "Nils", "Olga", "Pablo", "Quinn", "Rosa", "Samir", "Tara", "Ugo",
    "Vera", "Wim", "Xenia", "Yusuf", "Zoe", "Amir", "Bea", "Chen", "Dara", "Emil", "Freya",
    "Goran", "Hana", "Ivan", "Julia",
];
const LAST: [&str; 37] = [
    "Novak",
    "Berger",
    "Costa",
    "Lindqvist",
    "Moreau",
    "Okafor",
    "Petrov",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Ulrich",
    "Varga",
    "Weber",
    "Yilmaz",
    "Zhang",
    "Andersen",
    "Bauer",
    "Castillo",
    "Dumont",
    "Eriksen",
    "Fontaine",
    "Garcia",
    "Horvat",
    "Jansen",
    "Kowalski",
    "Laurent",
    "Meyer",
    "Nowak",
    "Ortega",
    "Pereira",
    "Quist",
    "Richter",
    "Silva",
    "Torres",
    "Vogel",
    "Wagner",
    "Keller",
];

/// (department, team, role, title, skills, head count).
type Group = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    usize,
);

/// The firm's groups; the head counts sum to 140.
const LAYOUT: [Group; 9] = [
    ("Executive", "exec", "partner", "Partner", &["strategy"], 4),
    (
        "Sales",
        "sales-north",
        "sales_rep",
        "Account Executive",
        &["negotiation"],
        9,
    ),
    (
        "Sales",
        "sales-south",
        "sales_rep",
        "Account Executive",
        &["negotiation"],
        9,
    ),
    (
        "Delivery",
        "delivery",
        "consultant",
        "Consultant",
        &["rust", "data"],
        44,
    ),
    (
        "Delivery",
        "delivery",
        "consultant",
        "Senior Consultant",
        &["cloud", "security"],
        30,
    ),
    (
        "Delivery",
        "delivery",
        "project_manager",
        "Project Manager",
        &["planning"],
        10,
    ),
    (
        "Finance",
        "finance",
        "accountant",
        "Accountant",
        &["accounting"],
        8,
    ),
    ("People", "people", "hr", "HR Partner", &["recruiting"], 6),
    (
        "Operations",
        "operations",
        "operations",
        "Operations Specialist",
        &["it", "facilities"],
        20,
    ),
];

/// The four demo personas, by the key used in `--tokens-file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persona {
    /// Lena Fischer, account executive in sales-north: `mcp:crm:write`.
    SalesRep,
    /// Omar Haddad, project manager on Atlas and Beacon: `mcp:docs:write mcp:crm:read`.
    ProjectManager,
    /// Claire Dubois, CFO: `mcp:billing:write mcp:crm:read`.
    Cfo,
    /// Victor Almeida, CEO: every `:read` scope.
    Ceo,
}

impl Persona {
    /// All personas, in display order.
    pub const ALL: [Persona; 4] = [Self::SalesRep, Self::ProjectManager, Self::Cfo, Self::Ceo];

    /// The key in the tokens file (`sales_rep`, ...).
    pub fn key(self) -> &'static str {
        match self {
            Self::SalesRep => "sales_rep",
            Self::ProjectManager => "project_manager",
            Self::Cfo => "cfo",
            Self::Ceo => "ceo",
        }
    }

    /// The employee id of the persona.
    pub fn employee_id(self) -> &'static str {
        match self {
            Self::SalesRep => SALES_REP,
            Self::ProjectManager => PROJECT_MANAGER,
            Self::Cfo => CFO,
            Self::Ceo => CEO,
        }
    }

    /// The scopes of the persona (docs/architecture.md, Meridian): those of its role.
    pub fn scopes(self) -> &'static [&'static str] {
        let role = match self {
            Self::SalesRep => "sales_rep",
            Self::ProjectManager => "project_manager",
            Self::Cfo => "cfo",
            Self::Ceo => "ceo",
        };
        role_scopes(role)
    }

    /// The identity claims of the persona's token (without `iss`, `aud`,
    /// times and `scope`).
    pub fn claims(self) -> Value {
        let e = employee(self.employee_id()).expect("personas are directory rows");
        json!({"sub": e.id, "email": e.email, "name": e.name, "role": e.role, "team": e.team})
    }
}

/// The gateway scope of the tracker's tools: everyone uses the tracker,
/// through their own linked tracker account.
pub const TRACKER_SCOPE: &str = "mcp:tracker:write";

const ALL_READS: &[&str] = &[
    "mcp:crm:read",
    "mcp:docs:read",
    "mcp:billing:read",
    "mcp:staffing:read",
    TRACKER_SCOPE,
];

/// The scopes a role's token carries: the persona table of docs/architecture.md for
/// the four persona roles, and the same logic for the others (partners
/// oversee like the CEO, accountants work like the CFO, HR owns staffing,
/// consultants write project documents and read staffing, operations read
/// staffing). Every role also has [`TRACKER_SCOPE`].
pub fn role_scopes(role: &str) -> &'static [&'static str] {
    match role {
        "sales_rep" => &["mcp:crm:write", TRACKER_SCOPE],
        "project_manager" => &["mcp:docs:write", "mcp:crm:read", TRACKER_SCOPE],
        "cfo" | "accountant" => &["mcp:billing:write", "mcp:crm:read", TRACKER_SCOPE],
        "ceo" | "partner" => ALL_READS,
        "hr" => &["mcp:staffing:write", TRACKER_SCOPE],
        "consultant" => &["mcp:docs:write", "mcp:staffing:read", TRACKER_SCOPE],
        "operations" => &["mcp:staffing:read", TRACKER_SCOPE],
        _ => &[],
    }
}

/// Lena Fischer, sales-north.
pub const SALES_REP: &str = "e-007";
/// Omar Haddad, project manager.
pub const PROJECT_MANAGER: &str = "e-098";
/// Claire Dubois, CFO.
pub const CFO: &str = "e-003";
/// Victor Almeida, CEO.
pub const CEO: &str = "e-001";
/// Priya Nair, head of people (an HR role).
pub const HEAD_OF_PEOPLE: &str = "e-115";
/// Marco Bianchi, sales-south.
pub const SOUTH_REP: &str = "e-015";

/// Rows that are not generated: the leadership and the personas.
fn named(n: usize) -> Option<(&'static str, &'static str, &'static str, &'static str)> {
    // (name, team, role, title)
    Some(match n {
        1 => ("Victor Almeida", "exec", "ceo", "Chief Executive Officer"),
        2 => ("Sofia Brandt", "exec", "partner", "Managing Partner"),
        3 => ("Claire Dubois", "finance", "cfo", "Chief Financial Officer"),
        4 => ("Jakob Lind", "exec", "partner", "Delivery Partner"),
        7 => (
            "Lena Fischer",
            "sales-north",
            "sales_rep",
            "Account Executive",
        ),
        15 => (
            "Marco Bianchi",
            "sales-south",
            "sales_rep",
            "Account Executive",
        ),
        98 => (
            "Omar Haddad",
            "delivery",
            "project_manager",
            "Project Manager",
        ),
        108 => ("Ruth Okoye", "finance", "accountant", "Senior Accountant"),
        115 => ("Priya Nair", "people", "hr", "Head of People"),
        _ => return None,
    })
}

/// The whole directory, 140 people.
pub fn directory() -> Vec<Employee> {
    let mut out = Vec::with_capacity(140);
    let mut n = 0usize;
    for (department, team, role, title, skills, count) in LAYOUT {
        for _ in 0..count {
            n += 1;
            let generated = format!("{} {}", FIRST[n % FIRST.len()], LAST[(n * 7) % LAST.len()]);
            let (name, team, role, title) = match named(n) {
                Some((name, team, role, title)) => (name.to_string(), team, role, title),
                None => (generated, team, role, title),
            };
            let email = format!("{}@meridian.example", name.to_lowercase().replace(' ', "."));
            let manager = match n {
                1 => None,
                2..=4 => Some(CEO.to_string()),
                _ => Some(
                    match team {
                        "sales-north" | "sales-south" => "e-002",
                        "finance" => CFO,
                        "people" => HEAD_OF_PEOPLE,
                        "delivery" => "e-004",
                        _ => "e-002",
                    }
                    .to_string(),
                ),
            };
            out.push(Employee {
                id: format!("e-{n:03}"),
                name,
                email,
                department,
                team,
                role,
                title,
                skills: skills.to_vec(),
                manager,
            });
        }
    }
    out
}

/// One employee by id.
pub fn employee(id: &str) -> Option<Employee> {
    directory().into_iter().find(|e| e.id == id)
}

/// A claim of the caller's token as a string (`team`, `name`, ...).
pub fn claim<'a>(caller: &'a cortex_backend::Caller, name: &str) -> Option<&'a str> {
    caller.claims.get(name).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_firm_has_140_people_and_the_personas_fit() {
        let people = directory();
        assert_eq!(people.len(), 140);
        assert_eq!(people[139].id, "e-140");
        let expected = [
            (Persona::SalesRep, "sales_rep", "sales-north"),
            (Persona::ProjectManager, "project_manager", "delivery"),
            (Persona::Cfo, "cfo", "finance"),
            (Persona::Ceo, "ceo", "exec"),
        ];
        for (persona, role, team) in expected {
            let claims = persona.claims();
            assert_eq!(
                (claims["role"].as_str(), claims["team"].as_str()),
                (Some(role), Some(team))
            );
        }
        assert_eq!(employee(HEAD_OF_PEOPLE).map(|e| e.role), Some("hr"));
        // Every role of the directory has scopes.
        assert!(people.iter().all(|e| !role_scopes(e.role).is_empty()));
        assert_eq!(Persona::SalesRep.scopes(), ["mcp:crm:write", TRACKER_SCOPE]);
        assert_eq!(Persona::Ceo.scopes().len(), 5);
        assert!(
            people
                .iter()
                .all(|e| role_scopes(e.role).contains(&TRACKER_SCOPE))
        );
        assert_eq!(employee(SOUTH_REP).map(|e| e.team), Some("sales-south"));
    }
}

use std::collections::BTreeSet;

// The one scope type: the OpenAPI document's `Scope` schema derives from it, and the OAuth2
// scheme's scopes are it (`api::security`, with the descriptions Swagger UI shows). Its doc
// comment is the schema's description.
/// A permission a token can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, poem_openapi::Enum)]
#[oai(rename = "Scope", rename_all = "lowercase")]
pub enum Scope {
    /// Read and change your own account.
    Me,
    /// Your own items.
    Items,
    /// Manage all users.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Me, Scope::Items, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Me => "me",
            Scope::Items => "items",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == raw)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes, written space-separated on the wire (RFC 6749 §3.3) and in the database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(BTreeSet<Scope>);

impl ScopeSet {
    /// What a new user holds.
    pub fn default_for_new_users() -> Self {
        Self::from_iter([Scope::Me, Scope::Items])
    }

    /// Parses space-separated names; `Err` names the first unknown one.
    pub fn parse(raw: &str) -> Result<Self, String> {
        raw.split(' ')
            .filter(|name| !name.is_empty())
            .map(|name| Scope::parse(name).ok_or_else(|| name.to_owned()))
            .collect()
    }

    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }

    pub fn without(&self, scope: Scope) -> Self {
        self.iter().filter(|s| *s != scope).collect()
    }

    /// The scopes of `self` that `other` lacks.
    pub fn missing_from(&self, other: &ScopeSet) -> Vec<Scope> {
        self.iter().filter(|s| !other.contains(*s)).collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.iter().map(|s| s.as_str().to_owned()).collect()
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<T: IntoIterator<Item = Scope>>(iter: T) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl std::fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.iter().map(Scope::as_str).collect();
        f.write_str(&names.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_through_their_text_form() {
        let set = ScopeSet::parse("items  me").unwrap();
        assert_eq!(set.to_string(), "me items");
        assert_eq!(ScopeSet::parse(&set.to_string()).unwrap(), set);
    }

    #[test]
    fn an_unknown_scope_is_named() {
        assert_eq!(ScopeSet::parse("me root").unwrap_err(), "root");
    }

    #[test]
    fn missing_scopes_are_listed_in_order() {
        let needed = ScopeSet::parse("me items").unwrap();
        let held = ScopeSet::parse("items").unwrap();
        assert_eq!(needed.missing_from(&held), vec![Scope::Me]);
    }
}

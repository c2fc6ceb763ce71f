//! Which operator serves a number: longest national prefix wins, after the
//! number is normalised (`+86`, `86`, `0086` stripped).

use tongdao_link::Alphabet;

use super::settings::OperatorConfig;

/// Why a number cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("`{0}` is not a phone number (11 digits, optionally with +86, 86 or 0086)")]
    Malformed(String),
    #[error("no operator serves {0}")]
    NoOperator(String),
}

/// The national form of a mainland mobile number: 11 digits starting with 1.
pub fn normalize_msisdn(raw: &str) -> Result<String, RouteError> {
    let compact: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let digits = compact
        .strip_prefix("+86")
        .or_else(|| compact.strip_prefix("0086"))
        .or_else(|| compact.strip_prefix("86").filter(|rest| rest.len() == 11))
        .unwrap_or(&compact);
    if digits.len() == 11 && digits.starts_with('1') && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(digits.to_string())
    } else {
        Err(RouteError::Malformed(raw.to_string()))
    }
}

/// The prefix table of every configured operator.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// (prefix, operator), longest prefixes first.
    table: Vec<(String, String)>,
    /// Operators whose protocol encodes texts otherwise than SMPP's
    /// [`Alphabet::Auto`] (CMPP: [`Alphabet::Ascii`]), by name.
    alphabets: Vec<(String, Alphabet)>,
}

impl Routes {
    pub fn new(operators: &[OperatorConfig]) -> Self {
        let mut table: Vec<(String, String)> = operators
            .iter()
            .flat_map(|op| op.prefixes.iter().map(|p| (p.clone(), op.name.clone())))
            .collect();
        table.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        let alphabets = operators
            .iter()
            .map(|op| (op.name.clone(), op.protocol.alphabet()))
            .filter(|(_, a)| *a != Alphabet::Auto)
            .collect();
        Self { table, alphabets }
    }

    /// How texts to `operator` are encoded and segmented (its protocol's
    /// [`super::settings::Protocol::alphabet`]): the outbox counts segments by it and
    /// the operator's bind sends them by it.
    pub fn alphabet(&self, operator: &str) -> Alphabet {
        self.alphabets
            .iter()
            .find(|(name, _)| name == operator)
            .map_or(Alphabet::Auto, |(_, a)| *a)
    }

    /// The operators whose [`Routes::alphabet`] is `alphabet` (other than
    /// [`Alphabet::Auto`]).
    pub fn operators_with(&self, alphabet: Alphabet) -> Vec<String> {
        self.alphabets
            .iter()
            .filter(|(_, a)| *a == alphabet)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// (prefix, operator) pairs, longest prefixes first: the order [`Routes::route`]
    /// tries them in.
    pub fn table(&self) -> &[(String, String)] {
        &self.table
    }

    /// The operator names, each once.
    pub fn operators(&self) -> Vec<String> {
        let mut names: Vec<String> = self.table.iter().map(|(_, op)| op.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    /// Whether an operator of that name is configured.
    pub fn has_operator(&self, name: &str) -> bool {
        self.table.iter().any(|(_, op)| op == name)
    }

    /// The normalised number and the operator that serves it.
    pub fn route(&self, raw: &str) -> Result<(String, String), RouteError> {
        let number = normalize_msisdn(raw)?;
        let operator = self
            .table
            .iter()
            .find(|(prefix, _)| number.starts_with(prefix.as_str()))
            .map(|(_, op)| op.clone())
            .ok_or_else(|| RouteError::NoOperator(number.clone()))?;
        Ok((number, operator))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, prefixes: &[&str]) -> OperatorConfig {
        OperatorConfig {
            name: name.into(),
            address: "127.0.0.1:1".into(),
            system_id: "x".into(),
            password: "x".into(),
            system_type: String::new(),
            binds: 1,
            window: 1,
            tps: 0,
            prefixes: prefixes.iter().map(|p| (*p).to_string()).collect(),
            source_addr: "10661234".into(),
            concat: crate::relay::settings::ConcatMode::Udh,
            ..Default::default()
        }
    }

    #[test]
    fn numbers_are_normalised() {
        for raw in [
            "13800138000",
            "+8613800138000",
            "8613800138000",
            "008613800138000",
            "138 0013 8000",
        ] {
            assert_eq!(normalize_msisdn(raw).unwrap(), "13800138000", "{raw}");
        }
        for bad in [
            "",
            "1380013800",
            "23800138000",
            "+1 415 555 0100",
            "1380013800x",
        ] {
            assert!(normalize_msisdn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn longest_prefix_wins_and_unserved_numbers_fail_clearly() {
        let routes = Routes::new(&[
            op("mobile", &["138", "1380"]),
            op("unicom", &["13800", "130"]),
        ]);
        assert_eq!(routes.route("13800138000").unwrap().1, "unicom");
        assert_eq!(routes.route("13801138000").unwrap().1, "mobile");
        assert_eq!(routes.route("13812345678").unwrap().1, "mobile");
        assert_eq!(routes.route("13012345678").unwrap().1, "unicom");
        assert_eq!(
            routes.route("19912345678"),
            Err(RouteError::NoOperator("19912345678".into()))
        );
    }
}

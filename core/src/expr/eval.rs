//! Evaluating an [`Expr`] against a set of labels, and the [`Labels`] sources it accepts.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash};

use super::Expr;

/// Read access to a set of labels, such as a pod's `metadata.labels`.
///
/// Implemented for the maps Kubernetes clients use (`BTreeMap<String, String>`, `HashMap<String, String>`,
/// also with `&str` keys or values), for `Option` of those (Kubernetes' `metadata.labels`; `None` has no
/// labels) and for slices, arrays and vectors of `(key, value)` pairs, which are handy in tests. In a list
/// of pairs the first pair with the key wins.
pub trait Labels {
    /// The value of label `key`, or `None` when the label is absent.
    fn label(&self, key: &str) -> Option<&str>;
}

impl<L: Labels + ?Sized> Labels for &L {
    fn label(&self, key: &str) -> Option<&str> {
        (**self).label(key)
    }
}

/// `None` has no labels, so `expr.matches(&pod.metadata.labels)` works on an `Option<BTreeMap<..>>`.
impl<L: Labels> Labels for Option<L> {
    fn label(&self, key: &str) -> Option<&str> {
        self.as_ref().and_then(|labels| labels.label(key))
    }
}

impl<K: Borrow<str> + Ord, V: AsRef<str>> Labels for BTreeMap<K, V> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(AsRef::as_ref)
    }
}

impl<K: Borrow<str> + Hash + Eq, V: AsRef<str>, S: BuildHasher> Labels for HashMap<K, V, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(AsRef::as_ref)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Labels for [(K, V)] {
    fn label(&self, key: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.as_ref() == key)
            .map(|(_, v)| v.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> Labels for [(K, V); N] {
    fn label(&self, key: &str) -> Option<&str> {
        self.as_slice().label(key)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Labels for Vec<(K, V)> {
    fn label(&self, key: &str) -> Option<&str> {
        self.as_slice().label(key)
    }
}

impl Expr {
    /// Whether a workload with these labels is selected by the expression.
    ///
    /// Negative tests follow Kubernetes label selectors: `k != v` and `k notin (...)` are true when the
    /// label `k` is absent, exactly like `not (k = v)` and `not (k in (...))`. Combine with `has(k)` to
    /// require the label: `has(k) and k != v`.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use airlock_core::expr::parse;
    ///
    /// let expr = parse("app = llm and tier != test")?;
    ///
    /// let pod: BTreeMap<String, String> =
    ///     [("app".to_owned(), "llm".to_owned()), ("tier".to_owned(), "prod".to_owned())].into();
    /// assert!(expr.matches(&pod));
    ///
    /// // `tier != test` also holds when there is no `tier` label at all.
    /// assert!(expr.matches(&[("app", "llm")]));
    /// assert!(!expr.matches(&[("app", "llm"), ("tier", "test")]));
    /// assert!(!expr.matches(&[("app", "web")]));
    /// # Ok::<(), airlock_core::expr::ParseError>(())
    /// ```
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        match self {
            Expr::And(left, right) => left.matches(labels) && right.matches(labels),
            Expr::Or(left, right) => left.matches(labels) || right.matches(labels),
            Expr::Not(inner) => !inner.matches(labels),
            Expr::Eq { key, value } => labels.label(key) == Some(value.as_str()),
            Expr::NotEq { key, value } => labels.label(key) != Some(value.as_str()),
            Expr::In { key, values } => labels.label(key).is_some_and(|v| values.iter().any(|x| x == v)),
            Expr::NotIn { key, values } => !labels.label(key).is_some_and(|v| values.iter().any(|x| x == v)),
            Expr::Has(key) => labels.label(key).is_some(),
        }
    }

    /// The label keys the expression reads, for indexing workloads by the labels that can change the result.
    ///
    /// A workload's labels outside this set never change what [`Expr::matches`] returns.
    ///
    /// ```
    /// let expr: airlock_core::expr::Expr = "has(app) and not (tier in (a, b) or app = x)".parse()?;
    /// assert_eq!(expr.keys().into_iter().collect::<Vec<_>>(), ["app", "tier"]);
    /// # Ok::<(), airlock_core::expr::ParseError>(())
    /// ```
    pub fn keys(&self) -> BTreeSet<&str> {
        let mut keys = BTreeSet::new();
        let mut pending = vec![self];
        while let Some(expr) = pending.pop() {
            match expr {
                Expr::And(left, right) | Expr::Or(left, right) => {
                    pending.push(left);
                    pending.push(right);
                }
                Expr::Not(inner) => pending.push(inner),
                Expr::Eq { key, .. }
                | Expr::NotEq { key, .. }
                | Expr::In { key, .. }
                | Expr::NotIn { key, .. }
                | Expr::Has(key) => {
                    keys.insert(key.as_str());
                }
            }
        }
        keys
    }
}

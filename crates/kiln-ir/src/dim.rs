//! Tensor dimensions: known sizes, symbolic expressions over the model's named dims (`batch`,
//! `(height - 1)/2 + 1`, ...), or unknown.
//!
//! Expressions are kept in a normal form — a linear combination of atoms plus a constant — so
//! that equal sizes written differently compare equal in the common cases (`h/2/2` is `h/4`,
//! `(2*h + 3)/2` is `h + 1`). `/` always means floor division on non-negative integers; the
//! printed form evaluates correctly in Python once `/` is read as `//`.
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A non-linear building block of an expression.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Atom {
    /// A named dimension from the model (`dim_param`).
    Sym(Arc<str>),
    /// A product of two or more atoms, sorted.
    Prod(Vec<Atom>),
    /// `floor(expr / k)` with `k >= 2`.
    FloorDiv(Box<Expr>, i64),
    Min(Box<Expr>, Box<Expr>),
    Max(Box<Expr>, Box<Expr>),
}

/// `sum(coef * atom) + konst`, with no zero coefficients.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Expr {
    terms: BTreeMap<Atom, i64>,
    konst: i64,
}

/// One tensor dimension.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(i64),
    Sym(Arc<Expr>),
    Unknown,
}

impl Expr {
    fn constant(k: i64) -> Expr {
        Expr {
            terms: BTreeMap::new(),
            konst: k,
        }
    }

    fn atom(a: Atom) -> Expr {
        let mut terms = BTreeMap::new();
        terms.insert(a, 1);
        Expr { terms, konst: 0 }
    }

    fn as_const(&self) -> Option<i64> {
        self.terms.is_empty().then_some(self.konst)
    }

    fn add(&self, o: &Expr) -> Option<Expr> {
        let mut r = self.clone();
        r.konst = r.konst.checked_add(o.konst)?;
        for (a, c) in &o.terms {
            let e = r.terms.entry(a.clone()).or_insert(0);
            *e = e.checked_add(*c)?;
            if *e == 0 {
                r.terms.remove(a);
            }
        }
        Some(r)
    }

    fn scale(&self, k: i64) -> Option<Expr> {
        if k == 0 {
            return Some(Expr::constant(0));
        }
        let mut r = Expr::constant(self.konst.checked_mul(k)?);
        for (a, c) in &self.terms {
            r.terms.insert(a.clone(), c.checked_mul(k)?);
        }
        Some(r)
    }

    fn mul(&self, o: &Expr) -> Option<Expr> {
        if let Some(k) = o.as_const() {
            return self.scale(k);
        }
        if let Some(k) = self.as_const() {
            return o.scale(k);
        }
        let mut r = Expr::constant(self.konst.checked_mul(o.konst)?);
        r = r.add(
            &Expr {
                terms: o.terms.clone(),
                konst: 0,
            }
            .scale(self.konst)?,
        )?;
        r = r.add(
            &Expr {
                terms: self.terms.clone(),
                konst: 0,
            }
            .scale(o.konst)?,
        )?;
        for (a, ca) in &self.terms {
            for (b, cb) in &o.terms {
                let mut factors = Vec::new();
                for x in [a, b] {
                    match x {
                        Atom::Prod(fs) => factors.extend(fs.iter().cloned()),
                        other => factors.push(other.clone()),
                    }
                }
                factors.sort();
                let term = Expr::atom(Atom::Prod(factors)).scale(ca.checked_mul(*cb)?)?;
                r = r.add(&term)?;
            }
        }
        Some(r)
    }

    fn floor_div(&self, k: i64) -> Option<Expr> {
        if k <= 0 {
            return None;
        }
        if k == 1 {
            return Some(self.clone());
        }
        // floor((k*T + R) / k) = T + floor(R / k) for integer T: pull out what divides exactly.
        let mut whole = Expr::constant(self.konst.div_euclid(k));
        let mut rest = Expr::constant(self.konst.rem_euclid(k));
        for (a, c) in &self.terms {
            if c % k == 0 {
                whole.terms.insert(a.clone(), c / k);
            } else {
                rest.terms.insert(a.clone(), *c);
            }
        }
        if rest.terms.is_empty() {
            return Some(whole); // rest.konst < k, so floor(rest/k) == 0
        }
        // floor((floor(x/m) + c)/k) = floor((x + c*m)/(m*k)).
        let inner = if rest.terms.len() == 1 {
            match rest.terms.iter().next() {
                Some((Atom::FloorDiv(x, m), 1)) => {
                    let c = Expr::constant(rest.konst.checked_mul(*m)?);
                    Some((x.add(&c)?, m.checked_mul(k)?))
                }
                _ => None,
            }
        } else {
            None
        };
        let (num, den) = inner.unwrap_or((rest, k));
        whole.add(&Expr::atom(Atom::FloorDiv(Box::new(num), den)))
    }

    /// Lower and upper bounds (`None`: unbounded), assuming every named dim is at least 1.
    fn bounds(&self) -> (Option<i64>, Option<i64>) {
        let mut lo = Some(self.konst);
        let mut hi = Some(self.konst);
        for (a, &c) in &self.terms {
            let (alo, ahi) = a.bounds();
            let (tlo, thi) = if c > 0 {
                (
                    alo.and_then(|x| x.checked_mul(c)),
                    ahi.and_then(|x| x.checked_mul(c)),
                )
            } else {
                (
                    ahi.and_then(|x| x.checked_mul(c)),
                    alo.and_then(|x| x.checked_mul(c)),
                )
            };
            lo = lo.zip(tlo).and_then(|(x, y)| x.checked_add(y));
            hi = hi.zip(thi).and_then(|(x, y)| x.checked_add(y));
        }
        (lo, hi)
    }

    fn eval(&self, env: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        let mut v = self.konst;
        for (a, c) in &self.terms {
            v = v.checked_add(a.eval(env)?.checked_mul(*c)?)?;
        }
        Some(v)
    }

    fn symbols(&self, out: &mut Vec<Arc<str>>) {
        for a in self.terms.keys() {
            a.symbols(out);
        }
    }
}

impl Atom {
    fn bounds(&self) -> (Option<i64>, Option<i64>) {
        match self {
            Atom::Sym(_) => (Some(1), None),
            Atom::Prod(fs) => {
                let mut lo = Some(1i64);
                for f in fs {
                    match f.bounds().0 {
                        Some(l) if l >= 0 => lo = lo.and_then(|x| x.checked_mul(l)),
                        _ => return (None, None),
                    }
                }
                (lo, None)
            }
            Atom::FloorDiv(e, k) => {
                let (lo, hi) = e.bounds();
                (lo.map(|l| l.div_euclid(*k)), hi.map(|h| h.div_euclid(*k)))
            }
            Atom::Min(a, b) => {
                let ((al, ah), (bl, bh)) = (a.bounds(), b.bounds());
                let hi = match (ah, bh) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                };
                (al.zip(bl).map(|(x, y)| x.min(y)), hi)
            }
            Atom::Max(a, b) => {
                let ((al, ah), (bl, bh)) = (a.bounds(), b.bounds());
                let lo = match (al, bl) {
                    (Some(x), Some(y)) => Some(x.max(y)),
                    (x, y) => x.or(y),
                };
                (lo, ah.zip(bh).map(|(x, y)| x.max(y)))
            }
        }
    }

    fn eval(&self, env: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        match self {
            Atom::Sym(s) => env(s),
            Atom::Prod(fs) => fs
                .iter()
                .try_fold(1i64, |acc, f| acc.checked_mul(f.eval(env)?)),
            Atom::FloorDiv(e, k) => Some(e.eval(env)?.div_euclid(*k)),
            Atom::Min(a, b) => Some(a.eval(env)?.min(b.eval(env)?)),
            Atom::Max(a, b) => Some(a.eval(env)?.max(b.eval(env)?)),
        }
    }

    fn symbols(&self, out: &mut Vec<Arc<str>>) {
        match self {
            Atom::Sym(s) => {
                if !out.contains(s) {
                    out.push(s.clone())
                }
            }
            Atom::Prod(fs) => fs.iter().for_each(|f| f.symbols(out)),
            Atom::FloorDiv(e, _) => e.symbols(out),
            Atom::Min(a, b) | Atom::Max(a, b) => {
                a.symbols(out);
                b.symbols(out)
            }
        }
    }

    /// Writes the atom so that it binds tighter than `*` and `/`.
    fn fmt_factor(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Atom::Sym(_) | Atom::Min(..) | Atom::Max(..) => write!(f, "{self}"),
            _ => write!(f, "({self})"),
        }
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Atom::Sym(s) => f.write_str(s),
            Atom::Prod(fs) => {
                for (i, x) in fs.iter().enumerate() {
                    if i > 0 {
                        f.write_str("*")?;
                    }
                    x.fmt_factor(f)?;
                }
                Ok(())
            }
            Atom::FloorDiv(e, k) => {
                if e.konst == 0 && e.terms.len() == 1 && e.terms.values().all(|c| *c == 1) {
                    let a = e.terms.keys().next().expect("one term");
                    a.fmt_factor(f)?;
                    write!(f, "/{k}")
                } else {
                    write!(f, "({e})/{k}")
                }
            }
            Atom::Min(a, b) => write!(f, "min({a}, {b})"),
            Atom::Max(a, b) => write!(f, "max({a}, {b})"),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (a, c) in &self.terms {
            let (neg, mag) = (*c < 0, c.unsigned_abs());
            if first {
                if neg {
                    f.write_str("-")?;
                }
            } else {
                f.write_str(if neg { " - " } else { " + " })?;
            }
            first = false;
            if mag != 1 {
                write!(f, "{mag}*")?;
                a.fmt_factor(f)?;
            } else if matches!(a, Atom::FloorDiv(..)) && neg {
                a.fmt_factor(f)?;
            } else {
                write!(f, "{a}")?;
            }
        }
        if first {
            write!(f, "{}", self.konst)
        } else if self.konst > 0 {
            write!(f, " + {}", self.konst)
        } else if self.konst < 0 {
            write!(f, " - {}", self.konst.unsigned_abs())
        } else {
            Ok(())
        }
    }
}

impl Dim {
    /// A named dimension.
    pub fn sym(name: &str) -> Dim {
        Dim::Sym(Arc::new(Expr::atom(Atom::Sym(name.into()))))
    }

    pub fn known(&self) -> Option<i64> {
        match self {
            Dim::Known(k) => Some(*k),
            _ => None,
        }
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Dim::Unknown)
    }

    fn expr(&self) -> Option<Expr> {
        match self {
            Dim::Known(k) => Some(Expr::constant(*k)),
            Dim::Sym(e) => Some(e.as_ref().clone()),
            Dim::Unknown => None,
        }
    }

    fn from_expr(e: Option<Expr>) -> Dim {
        match e {
            None => Dim::Unknown,
            Some(e) => match e.as_const() {
                Some(k) => Dim::Known(k),
                None => Dim::Sym(Arc::new(e)),
            },
        }
    }

    fn binary(&self, o: &Dim, f: impl FnOnce(&Expr, &Expr) -> Option<Expr>) -> Dim {
        match (self.expr(), o.expr()) {
            (Some(a), Some(b)) => Dim::from_expr(f(&a, &b)),
            _ => Dim::Unknown,
        }
    }

    pub fn add(&self, o: &Dim) -> Dim {
        self.binary(o, |a, b| a.add(b))
    }

    pub fn sub(&self, o: &Dim) -> Dim {
        self.binary(o, |a, b| a.add(&b.scale(-1)?))
    }

    pub fn mul(&self, o: &Dim) -> Dim {
        self.binary(o, |a, b| a.mul(b))
    }

    pub fn add_const(&self, k: i64) -> Dim {
        self.add(&Dim::Known(k))
    }

    /// Floor division by a positive constant; anything else is unknown.
    pub fn floor_div(&self, k: i64) -> Dim {
        match self.expr() {
            Some(e) => Dim::from_expr(e.floor_div(k)),
            None => Dim::Unknown,
        }
    }

    /// Floor division by another dim (only a known positive divisor gives a result).
    pub fn div(&self, o: &Dim) -> Dim {
        match o {
            Dim::Known(k) if *k > 0 => self.floor_div(*k),
            _ => Dim::Unknown,
        }
    }

    /// Ceiling division by a positive constant.
    pub fn ceil_div(&self, k: i64) -> Dim {
        if k <= 0 {
            return Dim::Unknown;
        }
        self.add_const(k - 1).floor_div(k)
    }

    pub fn min(&self, o: &Dim) -> Dim {
        self.min_max(o, true)
    }

    pub fn max(&self, o: &Dim) -> Dim {
        self.min_max(o, false)
    }

    fn min_max(&self, o: &Dim, is_min: bool) -> Dim {
        let (Some(a), Some(b)) = (self.expr(), o.expr()) else {
            return Dim::Unknown;
        };
        // When the sign of a - b is known (named dims are at least 1), so is the answer.
        if let Some(diff) = b.scale(-1).and_then(|nb| a.add(&nb)) {
            let (lo, hi) = diff.bounds();
            let a_smaller = if hi.is_some_and(|h| h <= 0) {
                Some(true)
            } else if lo.is_some_and(|l| l >= 0) {
                Some(false)
            } else {
                None
            };
            if let Some(a_smaller) = a_smaller {
                return Dim::from_expr(Some(if a_smaller == is_min { a } else { b }));
            }
        }
        let (x, y) = if a <= b { (a, b) } else { (b, a) };
        let atom = if is_min {
            Atom::Min(Box::new(x), Box::new(y))
        } else {
            Atom::Max(Box::new(x), Box::new(y))
        };
        Dim::from_expr(Some(Expr::atom(atom)))
    }

    /// The value of the dim with each named dim bound by `env`.
    pub fn eval(&self, env: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        self.expr()?.eval(env)
    }

    /// The named dims this dim depends on.
    pub fn symbols(&self) -> Vec<Arc<str>> {
        let mut v = Vec::new();
        if let Dim::Sym(e) = self {
            e.symbols(&mut v);
        }
        v
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(k) => write!(f, "{k}"),
            Dim::Sym(e) => write!(f, "{e}"),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

impl From<i64> for Dim {
    fn from(k: i64) -> Dim {
        Dim::Known(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn conv_out(h: &Dim, k: i64, s: i64, p: i64) -> Dim {
        h.add_const(2 * p - k).floor_div(s).add_const(1)
    }

    #[test]
    fn normal_forms() {
        let h = Dim::sym("height");
        assert_eq!(h.floor_div(2).floor_div(2), h.floor_div(4));
        assert_eq!(
            h.mul(&Dim::Known(2)).add_const(3).floor_div(2),
            h.add_const(1)
        );
        assert_eq!(h.sub(&h), Dim::Known(0));
        let o = conv_out(&h, 3, 2, 1);
        assert_eq!(o.to_string(), "(height + 1)/2");
        let o2 = conv_out(&o, 3, 2, 1);
        assert_eq!(o2.to_string(), "(height + 3)/4");
        let w = Dim::sym("width");
        assert_eq!(
            h.floor_div(8).mul(&w.floor_div(8)).to_string(),
            "(height/8)*(width/8)"
        );
        assert_eq!(h.min(&h.add_const(2)), h);
        assert_eq!(Dim::Known(3).max(&Dim::Known(5)), Dim::Known(5));
        assert_eq!(h.add(&Dim::Unknown), Dim::Unknown);
        assert_eq!(h.mul(&Dim::Known(0)), Dim::Known(0));
        assert_eq!(h.floor_div(0), Dim::Unknown);
        // Named dims are at least 1, so these clamps vanish.
        let w = Dim::sym("width");
        assert_eq!(Dim::Known(1).min(&h), Dim::Known(1));
        assert_eq!(
            h.add_const(1).floor_div(2).max(&Dim::Known(0)),
            h.add_const(1).floor_div(2)
        );
        assert_eq!(
            h.sub(&w).max(&Dim::Known(0)).to_string(),
            "max(0, height - width)"
        );
    }

    #[derive(Clone, Debug)]
    enum Op {
        K(i64),
        A,
        B,
        Add(Box<Op>, Box<Op>),
        Sub(Box<Op>, Box<Op>),
        Mul(Box<Op>, Box<Op>),
        Div(Box<Op>, i64),
        CeilDiv(Box<Op>, i64),
        Min(Box<Op>, Box<Op>),
        Max(Box<Op>, Box<Op>),
    }

    impl Op {
        fn naive(&self, a: i64, b: i64) -> i64 {
            match self {
                Op::K(k) => *k,
                Op::A => a,
                Op::B => b,
                Op::Add(x, y) => x.naive(a, b) + y.naive(a, b),
                Op::Sub(x, y) => x.naive(a, b) - y.naive(a, b),
                Op::Mul(x, y) => x.naive(a, b) * y.naive(a, b),
                Op::Div(x, k) => x.naive(a, b).div_euclid(*k),
                Op::CeilDiv(x, k) => (x.naive(a, b) + k - 1).div_euclid(*k),
                Op::Min(x, y) => x.naive(a, b).min(y.naive(a, b)),
                Op::Max(x, y) => x.naive(a, b).max(y.naive(a, b)),
            }
        }

        fn dim(&self) -> Dim {
            match self {
                Op::K(k) => Dim::Known(*k),
                Op::A => Dim::sym("a"),
                Op::B => Dim::sym("b"),
                Op::Add(x, y) => x.dim().add(&y.dim()),
                Op::Sub(x, y) => x.dim().sub(&y.dim()),
                Op::Mul(x, y) => x.dim().mul(&y.dim()),
                Op::Div(x, k) => x.dim().floor_div(*k),
                Op::CeilDiv(x, k) => x.dim().ceil_div(*k),
                Op::Min(x, y) => x.dim().min(&y.dim()),
                Op::Max(x, y) => x.dim().max(&y.dim()),
            }
        }
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        let leaf = prop_oneof![(-5i64..50).prop_map(Op::K), Just(Op::A), Just(Op::B)];
        leaf.prop_recursive(4, 24, 2, |inner| {
            let two = (inner.clone(), inner.clone());
            prop_oneof![
                two.clone()
                    .prop_map(|(x, y)| Op::Add(Box::new(x), Box::new(y))),
                two.clone()
                    .prop_map(|(x, y)| Op::Sub(Box::new(x), Box::new(y))),
                two.clone()
                    .prop_map(|(x, y)| Op::Mul(Box::new(x), Box::new(y))),
                (inner.clone(), 1i64..9).prop_map(|(x, k)| Op::Div(Box::new(x), k)),
                (inner, 1i64..9).prop_map(|(x, k)| Op::CeilDiv(Box::new(x), k)),
                two.clone()
                    .prop_map(|(x, y)| Op::Min(Box::new(x), Box::new(y))),
                two.prop_map(|(x, y)| Op::Max(Box::new(x), Box::new(y))),
            ]
        })
    }

    /// A tiny evaluator of the printed form, independent of `Expr`, to check that what we print
    /// means what we computed.
    fn eval_text(s: &str, a: i64, b: i64) -> i64 {
        fn expr(t: &[u8], i: &mut usize, a: i64, b: i64) -> i64 {
            let mut v = term(t, i, a, b);
            loop {
                skip(t, i);
                match t.get(*i) {
                    Some(b'+') => {
                        *i += 1;
                        v += term(t, i, a, b)
                    }
                    Some(b'-') => {
                        *i += 1;
                        v -= term(t, i, a, b)
                    }
                    _ => return v,
                }
            }
        }
        fn term(t: &[u8], i: &mut usize, a: i64, b: i64) -> i64 {
            let mut v = factor(t, i, a, b);
            loop {
                skip(t, i);
                match t.get(*i) {
                    Some(b'*') => {
                        *i += 1;
                        v *= factor(t, i, a, b)
                    }
                    Some(b'/') => {
                        *i += 1;
                        v = v.div_euclid(factor(t, i, a, b))
                    }
                    _ => return v,
                }
            }
        }
        fn skip(t: &[u8], i: &mut usize) {
            while t.get(*i) == Some(&b' ') {
                *i += 1
            }
        }
        fn factor(t: &[u8], i: &mut usize, a: i64, b: i64) -> i64 {
            skip(t, i);
            match t[*i] {
                b'-' => {
                    *i += 1;
                    -factor(t, i, a, b)
                }
                b'(' => {
                    *i += 1;
                    let v = expr(t, i, a, b);
                    skip(t, i);
                    *i += 1;
                    v
                }
                b'a' => {
                    *i += 1;
                    a
                }
                b'b' => {
                    *i += 1;
                    b
                }
                b'm' => {
                    let is_min = t[*i + 1] == b'i';
                    *i += 4;
                    let x = expr(t, i, a, b);
                    skip(t, i);
                    *i += 1; // ','
                    let y = expr(t, i, a, b);
                    skip(t, i);
                    *i += 1; // ')'
                    if is_min {
                        x.min(y)
                    } else {
                        x.max(y)
                    }
                }
                _ => {
                    let start = *i;
                    while t.get(*i).is_some_and(|c| c.is_ascii_digit()) {
                        *i += 1
                    }
                    std::str::from_utf8(&t[start..*i]).unwrap().parse().unwrap()
                }
            }
        }
        let mut i = 0;
        let v = expr(s.as_bytes(), &mut i, a, b);
        assert_eq!(i, s.len(), "trailing text in {s}");
        v
    }

    proptest! {
        #[test]
        /// Normalization keeps the value, and the printed form means the same thing.
        fn normal_form_and_text_keep_the_value(op in arb_op(), a in 1i64..40, b in 1i64..40) {
            let env = |s: &str| match s { "a" => Some(a), "b" => Some(b), _ => None };
            let d = op.dim();
            let expected = op.naive(a, b);
            prop_assert_eq!(d.eval(&env), Some(expected), "{}", d);
            prop_assert_eq!(eval_text(&d.to_string(), a, b), expected, "{}", d);
        }
    }
}

//! Lenient JSON: reading records field by field without a schema, so that a field of the wrong
//! type makes its record bad instead of stopping the parse of the file.
//!
//! The streaming readers of JSON formats (`jaeger`, `zipkin`) take every value
//! whatever its JSON type and keep what it was for the reason of a bad record ("traceID is a
//! number, not a string"). Only invalid JSON is a serde error here; a valid value of the wrong
//! shape is data, reported as a [`Checked`] error.
//!
//! ```text
//!  JSON value ──► Any(shape) ──► object: Shape::map ──► MapBody::read (the record's own fields)
//!                                array:  Shape::seq ──► Array: each element with Any(S)
//!                                other:  Shape::leaf(Leaf)
//! ```
//!
//! A record type implements [`MapBody`]; a field is read with [`next`] and one of the shapes
//! ([`LeafShape`] via [`leaf`], [`Object`], [`Array`], [`Elem`]), then checked with
//! [`Leaf::string`], [`Leaf::integer`], [`Leaf::boolean`], [`object`] or [`list`], which give the
//! reason texts. A reader with its own handling of the top level implements [`Shape`] itself.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A value read from outside that may be unusable, with the reason.
pub(crate) type Checked<T> = Result<T, String>;

/// A JSON value as far as it is read without a schema: a scalar with its value, an array or an
/// object only named (and skipped).
#[derive(Default)]
pub(crate) enum Leaf {
    /// `null` (also what an absent value is taken as).
    #[default]
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A non-negative integer.
    U64(u64),
    /// Any other number (negative, fractional, or too large).
    OtherNumber,
    /// A string.
    Str(String),
    /// An array, skipped.
    Array,
    /// An object, skipped.
    Object,
}

impl Leaf {
    /// What the value is, for messages: "null", "a boolean", "a number", ...
    pub(crate) fn what(&self) -> &'static str {
        match self {
            Leaf::Null => "null",
            Leaf::Bool(_) => "a boolean",
            Leaf::U64(_) | Leaf::OtherNumber => "a number",
            Leaf::Str(_) => "a string",
            Leaf::Array => "an array",
            Leaf::Object => "an object",
        }
    }

    /// The value of the field `name` that should be a string (null: absent).
    pub(crate) fn string(self, name: &str) -> Checked<Option<String>> {
        match self {
            Leaf::Null => Ok(None),
            Leaf::Str(s) => Ok(Some(s)),
            v => Err(format!("{name} is {}, not a string", v.what())),
        }
    }

    /// The value of the field `name` that should be a whole number of microseconds, as the times
    /// of both Jaeger and Zipkin are (null: absent).
    pub(crate) fn integer(self, name: &str) -> Checked<Option<u64>> {
        match self {
            Leaf::Null => Ok(None),
            Leaf::U64(n) => Ok(Some(n)),
            Leaf::OtherNumber => Err(format!(
                "{name} is negative, fractional or too large (expected whole microseconds)"
            )),
            v => Err(format!("{name} is {}, not an integer", v.what())),
        }
    }

    /// The value of the field `name` that should be a boolean (null: absent).
    pub(crate) fn boolean(self, name: &str) -> Checked<Option<bool>> {
        match self {
            Leaf::Null => Ok(None),
            Leaf::Bool(b) => Ok(Some(b)),
            v => Err(format!("{name} is {}, not a boolean", v.what())),
        }
    }
}

/// How a value of any JSON shape is read: an object by `map`, an array by `seq` (by default both
/// are skipped and named), anything else by `leaf`. Only invalid JSON is a serde error, and
/// whatever error a shape chooses to raise to stop the parse (a bad record in strict mode).
pub(crate) trait Shape<'de>: Sized {
    /// What reading a value gives.
    type Value;

    /// Reads a scalar, or an array or object that `seq` or `map` skipped.
    fn leaf<E: de::Error>(self, v: Leaf) -> Result<Self::Value, E>;

    /// Reads an object; by default it is skipped and handed to `leaf` as [`Leaf::Object`].
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        self.leaf(Leaf::Object)
    }

    /// Reads an array; by default it is skipped and handed to `leaf` as [`Leaf::Array`].
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.leaf(Leaf::Array)
    }
}

/// Reads a value of any shape with `S`.
pub(crate) struct Any<S>(pub(crate) S);

impl<'de, S: Shape<'de>> DeserializeSeed<'de> for Any<S> {
    type Value = S::Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, S: Shape<'de>> Visitor<'de> for Any<S> {
    type Value = S::Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<S::Value, E> {
        self.0.leaf(Leaf::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<S::Value, E> {
        self.0.leaf(Leaf::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<S::Value, E> {
        self.0.leaf(Leaf::Bool(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<S::Value, E> {
        self.0.leaf(Leaf::U64(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<S::Value, E> {
        self.0
            .leaf(u64::try_from(v).map_or(Leaf::OtherNumber, Leaf::U64))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<S::Value, E> {
        self.0.leaf(Leaf::OtherNumber)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<S::Value, E> {
        self.0.leaf(Leaf::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<S::Value, E> {
        self.0.leaf(Leaf::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<S::Value, A::Error> {
        self.0.seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<S::Value, A::Error> {
        self.0.map(map)
    }
}

/// An object read into `Self`; the outer `Result` is the parse, the inner one the content.
pub(crate) trait MapBody: Sized {
    /// What the object is, for "found ..., expected ..." messages.
    const WHAT: &'static str;

    /// Reads the object's entries; the first unusable field is the reason it is bad.
    fn read<'de, A: MapAccess<'de>>(map: A) -> Result<Checked<Self>, A::Error>;
}

/// Any scalar, objects and arrays named.
#[derive(Default)]
pub(crate) struct LeafShape;

impl Shape<'_> for LeafShape {
    type Value = Leaf;
    fn leaf<E: de::Error>(self, v: Leaf) -> Result<Leaf, E> {
        Ok(v)
    }
}

/// An element that must be an object `M`; anything else is "found ..., expected `M::WHAT`".
pub(crate) struct Elem<M>(PhantomData<M>);

impl<M> Default for Elem<M> {
    fn default() -> Self {
        Elem(PhantomData)
    }
}

impl<'de, M: MapBody> Shape<'de> for Elem<M> {
    type Value = Checked<M>;
    fn leaf<E: de::Error>(self, v: Leaf) -> Result<Checked<M>, E> {
        Ok(Err(format!("found {}, expected {}", v.what(), M::WHAT)))
    }
    fn map<A: MapAccess<'de>>(self, map: A) -> Result<Checked<M>, A::Error> {
        M::read(map)
    }
}

/// A field that should be an object `M`: the object, or what was found instead (see [`object`]).
pub(crate) struct Object<M>(PhantomData<M>);

impl<M> Default for Object<M> {
    fn default() -> Self {
        Object(PhantomData)
    }
}

impl<'de, M: MapBody> Shape<'de> for Object<M> {
    type Value = Result<Checked<M>, Leaf>;
    fn leaf<E: de::Error>(self, v: Leaf) -> Result<Self::Value, E> {
        Ok(Err(v))
    }
    fn map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        M::read(map).map(Ok)
    }
}

/// A field that should be an array of `S`: its elements, or what was found instead (see
/// [`list`]).
pub(crate) struct Array<S>(PhantomData<S>);

impl<S> Default for Array<S> {
    fn default() -> Self {
        Array(PhantomData)
    }
}

impl<'de, S: Shape<'de> + Default> Shape<'de> for Array<S> {
    type Value = Result<Vec<S::Value>, Leaf>;
    fn leaf<E: de::Error>(self, v: Leaf) -> Result<Self::Value, E> {
        Ok(Err(v))
    }
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Any(S::default()))? {
            out.push(v);
        }
        Ok(Ok(out))
    }
}

/// A field name, as the one of `self.0` it is (`None`: another), read without allocating.
pub(crate) struct Known(pub(crate) &'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Known {
    type Value = Option<&'static str>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl Visitor<'_> for Known {
    type Value = Option<&'static str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().copied().find(|&k| k == v))
    }
}

/// The next value of `map`, read with `S`.
pub(crate) fn next<'de, S: Shape<'de> + Default, A: MapAccess<'de>>(
    map: &mut A,
) -> Result<S::Value, A::Error> {
    map.next_value_seed(Any(S::default()))
}

/// The next value of `map`, whatever its shape; objects and arrays are skipped.
pub(crate) fn leaf<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Leaf, A::Error> {
    next::<LeafShape, _>(map)
}

/// The field `name` that should be an object (null: absent).
pub(crate) fn object<M>(name: &str, v: Result<Checked<M>, Leaf>) -> Checked<Option<M>> {
    match v {
        Ok(m) => m.map(Some).map_err(|p| format!("{name}: {p}")),
        Err(Leaf::Null) => Ok(None),
        Err(v) => Err(format!("{name} is {}, not an object", v.what())),
    }
}

/// The field `name` that should be an array of valid elements (null: absent); the first bad
/// element is the reason, located as `name[j]`.
pub(crate) fn list<T>(name: &str, v: Result<Vec<Checked<T>>, Leaf>) -> Checked<Option<Vec<T>>> {
    match v {
        Ok(items) => items
            .into_iter()
            .enumerate()
            .map(|(j, item)| item.map_err(|p| format!("{name}[{j}]: {p}")))
            .collect::<Checked<Vec<T>>>()
            .map(Some),
        Err(Leaf::Null) => Ok(None),
        Err(v) => Err(format!("{name} is {}, not an array", v.what())),
    }
}

//! Tables whose columns come from a row type's own definition: a row is serialised
//! (serde, fields in declaration order, `#[serde(flatten)]` included) into typed cells,
//! and read back through serde, so a row's fields are written once, in its struct.
//!
//! Cell types map to Parquet columns one to one: `u32` → UInt32, `u64` (and `usize`)
//! → UInt64, `f64` → Float64, `bool` → Boolean, strings and unit enum variants (their
//! serde names) → String.

use polars::prelude::{
    AnyValue, Column, DataFrame, DataType, IntoColumn, PolarsError, PolarsResult,
    StringChunkedBuilder,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde::ser::{self, Impossible};

/// One cell of a row as it is serialised (a string borrowed from the row).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scalar<'v> {
    U32(u32),
    U64(u64),
    F64(f64),
    Bool(bool),
    Str(&'v str),
}

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    U32,
    U64,
    F64,
    Bool,
    Str,
}

impl Kind {
    fn of(v: Scalar<'_>) -> Self {
        match v {
            Scalar::U32(_) => Kind::U32,
            Scalar::U64(_) => Kind::U64,
            Scalar::F64(_) => Kind::F64,
            Scalar::Bool(_) => Kind::Bool,
            Scalar::Str(_) => Kind::Str,
        }
    }

    fn dtype(self) -> DataType {
        match self {
            Kind::U32 => DataType::UInt32,
            Kind::U64 => DataType::UInt64,
            Kind::F64 => DataType::Float64,
            Kind::Bool => DataType::Boolean,
            Kind::Str => DataType::String,
        }
    }
}

/// Why a row cannot be a table row.
#[derive(Debug)]
struct Unsupported(String);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

impl ser::Error for Unsupported {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Unsupported(msg.to_string())
    }
}

fn unsupported<T>(what: &str) -> Result<T, Unsupported> {
    Err(Unsupported(format!("a table cell cannot be {what}")))
}

fn polars_error(e: Unsupported) -> PolarsError {
    PolarsError::ComputeError(e.0.into())
}

/// Where a serialised row's fields go, in order.
trait Sink {
    /// The next field's name.
    fn name(&mut self, name: &str);
    /// The next field's value.
    fn value(&mut self, v: Scalar<'_>) -> Result<(), Unsupported>;
}

/// A row type's columns: each field's name and type.
#[derive(Default)]
struct Schema(Vec<(String, Kind)>);

impl Sink for Schema {
    fn name(&mut self, name: &str) {
        self.0.push((name.into(), Kind::Str));
    }

    fn value(&mut self, v: Scalar<'_>) -> Result<(), Unsupported> {
        let Some(last) = self.0.last_mut() else {
            return unsupported("a value without a field name");
        };
        last.1 = Kind::of(v);
        Ok(())
    }
}

/// The schema of `T`, from its default row.
fn schema<T: Serialize + Default>() -> PolarsResult<Vec<(String, Kind)>> {
    let mut schema = Schema::default();
    T::default()
        .serialize(RowSer(&mut schema))
        .map_err(polars_error)?;
    Ok(schema.0)
}

/// A column being filled: values go straight into their typed column (strings into
/// polars' own buffer), so a row costs no allocation.
enum Values {
    U32(Vec<u32>),
    U64(Vec<u64>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    Str(StringChunkedBuilder),
}

impl Values {
    fn new(name: &str, kind: Kind, capacity: usize) -> Self {
        match kind {
            Kind::U32 => Values::U32(Vec::with_capacity(capacity)),
            Kind::U64 => Values::U64(Vec::with_capacity(capacity)),
            Kind::F64 => Values::F64(Vec::with_capacity(capacity)),
            Kind::Bool => Values::Bool(Vec::with_capacity(capacity)),
            Kind::Str => Values::Str(StringChunkedBuilder::new(name.into(), capacity)),
        }
    }

    fn push(&mut self, v: Scalar<'_>) -> Result<(), Unsupported> {
        match (self, v) {
            (Values::U32(c), Scalar::U32(x)) => c.push(x),
            (Values::U64(c), Scalar::U64(x)) => c.push(x),
            (Values::F64(c), Scalar::F64(x)) => c.push(x),
            (Values::Bool(c), Scalar::Bool(x)) => c.push(x),
            (Values::Str(c), Scalar::Str(x)) => c.append_value(x),
            (_, v) => return unsupported(&format!("{v:?} in a column of another type")),
        }
        Ok(())
    }

    fn into_column(self, name: &str) -> Column {
        match self {
            Values::U32(c) => Column::new(name.into(), c),
            Values::U64(c) => Column::new(name.into(), c),
            Values::F64(c) => Column::new(name.into(), c),
            Values::Bool(c) => Column::new(name.into(), c),
            Values::Str(c) => c.finish().into_column(),
        }
    }
}

/// The next row of a table's columns.
struct Fill<'a> {
    columns: &'a mut [Values],
    next: usize,
}

impl Sink for Fill<'_> {
    fn name(&mut self, _: &str) {}

    fn value(&mut self, v: Scalar<'_>) -> Result<(), Unsupported> {
        let Some(column) = self.columns.get_mut(self.next) else {
            return unsupported("a field past the table's columns");
        };
        self.next += 1;
        column.push(v)
    }
}

/// The table of `rows`: one column per field of `T` (its default gives the names and
/// types, so an empty table still has them).
pub fn to_frame<T: Serialize + Default>(rows: &[T]) -> PolarsResult<DataFrame> {
    let schema = schema::<T>()?;
    let mut columns: Vec<Values> = schema
        .iter()
        .map(|(name, kind)| Values::new(name, *kind, rows.len()))
        .collect();
    for row in rows {
        row.serialize(RowSer(&mut Fill {
            columns: &mut columns,
            next: 0,
        }))
        .map_err(polars_error)?;
    }
    let columns = schema
        .iter()
        .zip(columns)
        .map(|((name, _), values)| values.into_column(name))
        .collect();
    DataFrame::new(rows.len(), columns)
}

/// The rows of a table written by [`to_frame`] (or with the same columns): each column is
/// read as its field's type and every row deserialised; a field with no column (a
/// table written before it existed) takes its default.
pub fn from_frame<T: Serialize + DeserializeOwned + Default>(
    df: &DataFrame,
) -> PolarsResult<Vec<T>> {
    let schema = schema::<T>()?;
    let defaults = serde_json::to_value(T::default())
        .map_err(|e| PolarsError::ComputeError(e.to_string().into()))?;
    let mut columns = Vec::with_capacity(schema.len());
    for (name, kind) in &schema {
        let values: Vec<serde_json::Value> = match df.column(name) {
            Ok(c) => {
                let c = c.cast(&kind.dtype())?;
                (0..c.len())
                    .map(|i| json(c.get(i).unwrap_or(AnyValue::Null)))
                    .collect()
            }
            // A column added after older results folders were written: its default.
            Err(_) => vec![defaults[name.as_str()].clone(); df.height()],
        };
        columns.push(values);
    }
    (0..df.height())
        .map(|i| {
            let row: serde_json::Map<String, serde_json::Value> = schema
                .iter()
                .zip(&columns)
                .map(|((name, _), values)| (name.clone(), values[i].clone()))
                .collect();
            serde_json::from_value(serde_json::Value::Object(row))
                .map_err(|e| PolarsError::ComputeError(format!("row {i}: {e}").into()))
        })
        .collect()
}

fn json(v: AnyValue<'_>) -> serde_json::Value {
    match v {
        AnyValue::UInt32(x) => x.into(),
        AnyValue::UInt64(x) => x.into(),
        AnyValue::Float64(x) => x.into(),
        AnyValue::Boolean(x) => x.into(),
        AnyValue::String(s) => s.into(),
        AnyValue::StringOwned(s) => s.as_str().into(),
        _ => serde_json::Value::Null,
    }
}

/// Serialises a row: a struct (or, with flattened fields, a map) of cells.
struct RowSer<'a>(&'a mut dyn Sink);

/// Serialises one cell into the sink.
struct CellSer<'a>(&'a mut dyn Sink);

/// A flattened field's name, serialised as a string cell.
struct AsName<'a>(&'a mut dyn Sink);

impl Sink for AsName<'_> {
    fn name(&mut self, _: &str) {}

    fn value(&mut self, v: Scalar<'_>) -> Result<(), Unsupported> {
        match v {
            Scalar::Str(name) => {
                self.0.name(name);
                Ok(())
            }
            _ => unsupported("a field named by a non-string"),
        }
    }
}

macro_rules! refuse {
    ($($method:ident($($arg:ty),*) -> $ret:ty: $what:literal;)*) => {
        $(fn $method(self, $(_: $arg),*) -> Result<$ret, Unsupported> {
            unsupported($what)
        })*
    };
}

/// The generic methods no cell or row serialises.
macro_rules! refuse_generic {
    ($ok:ty, $what:literal) => {
        fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<$ok, Unsupported> {
            unsupported($what)
        }
        fn serialize_newtype_variant<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<$ok, Unsupported> {
            unsupported($what)
        }
    };
}

impl ser::Serializer for CellSer<'_> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Impossible<(), Unsupported>;
    type SerializeTuple = Impossible<(), Unsupported>;
    type SerializeTupleStruct = Impossible<(), Unsupported>;
    type SerializeTupleVariant = Impossible<(), Unsupported>;
    type SerializeMap = Impossible<(), Unsupported>;
    type SerializeStruct = Impossible<(), Unsupported>;
    type SerializeStructVariant = Impossible<(), Unsupported>;

    fn serialize_bool(self, v: bool) -> Result<(), Unsupported> {
        self.0.value(Scalar::Bool(v))
    }
    fn serialize_u8(self, v: u8) -> Result<(), Unsupported> {
        self.0.value(Scalar::U32(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<(), Unsupported> {
        self.0.value(Scalar::U32(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<(), Unsupported> {
        self.0.value(Scalar::U32(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), Unsupported> {
        self.0.value(Scalar::U64(v))
    }
    fn serialize_f32(self, v: f32) -> Result<(), Unsupported> {
        self.0.value(Scalar::F64(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Unsupported> {
        self.0.value(Scalar::F64(v))
    }
    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        self.0.value(Scalar::Str(v))
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Unsupported> {
        self.0.value(Scalar::Str(variant))
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        value.serialize(self)
    }
    refuse! {
        serialize_i8(i8) -> (): "a signed integer";
        serialize_i16(i16) -> (): "a signed integer";
        serialize_i32(i32) -> (): "a signed integer";
        serialize_i64(i64) -> (): "a signed integer";
        serialize_char(char) -> (): "a char";
        serialize_bytes(&[u8]) -> (): "bytes";
        serialize_none() -> (): "an option";
        serialize_unit() -> (): "a unit";
        serialize_unit_struct(&'static str) -> (): "a unit struct";
        serialize_seq(Option<usize>) -> Self::SerializeSeq: "a sequence";
        serialize_tuple(usize) -> Self::SerializeTuple: "a tuple";
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct: "a tuple";
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant: "a tuple";
        serialize_map(Option<usize>) -> Self::SerializeMap: "a map";
        serialize_struct(&'static str, usize) -> Self::SerializeStruct: "a struct";
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant: "a struct";
    }
    refuse_generic!((), "an option or an enum with data");
}

impl<'a> ser::Serializer for RowSer<'a> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Impossible<(), Unsupported>;
    type SerializeTuple = Impossible<(), Unsupported>;
    type SerializeTupleStruct = Impossible<(), Unsupported>;
    type SerializeTupleVariant = Impossible<(), Unsupported>;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), Unsupported>;

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Unsupported> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, Unsupported> {
        Ok(self)
    }
    refuse! {
        serialize_bool(bool) -> (): "a row";
        serialize_i8(i8) -> (): "a row";
        serialize_i16(i16) -> (): "a row";
        serialize_i32(i32) -> (): "a row";
        serialize_i64(i64) -> (): "a row";
        serialize_u8(u8) -> (): "a row";
        serialize_u16(u16) -> (): "a row";
        serialize_u32(u32) -> (): "a row";
        serialize_u64(u64) -> (): "a row";
        serialize_f32(f32) -> (): "a row";
        serialize_f64(f64) -> (): "a row";
        serialize_char(char) -> (): "a row";
        serialize_str(&str) -> (): "a row";
        serialize_bytes(&[u8]) -> (): "a row";
        serialize_none() -> (): "a row";
        serialize_unit() -> (): "a row";
        serialize_unit_struct(&'static str) -> (): "a row";
        serialize_unit_variant(&'static str, u32, &'static str) -> (): "a row";
        serialize_seq(Option<usize>) -> Self::SerializeSeq: "a row";
        serialize_tuple(usize) -> Self::SerializeTuple: "a row";
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct: "a row";
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant: "a row";
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant: "a row";
    }
    refuse_generic!((), "a row");
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        value.serialize(self)
    }
}

impl ser::SerializeStruct for RowSer<'_> {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        self.0.name(key);
        value.serialize(CellSer(&mut *self.0))
    }

    fn end(self) -> Result<(), Unsupported> {
        Ok(())
    }
}

/// A row with flattened fields, which serde writes as a map of its fields.
impl ser::SerializeMap for RowSer<'_> {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Unsupported> {
        key.serialize(CellSer(&mut AsName(&mut *self.0)))
    }

    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Unsupported> {
        value.serialize(CellSer(&mut *self.0))
    }

    fn end(self) -> Result<(), Unsupported> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        #[default]
        Apple,
        Pear,
    }

    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    struct Inner {
        n: u32,
        big: u64,
        kind: Kind,
    }

    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    struct Row {
        name: String,
        #[serde(flatten)]
        inner: Inner,
        x: f64,
        ok: bool,
    }

    #[test]
    fn columns_follow_the_struct_and_rows_read_back() {
        let rows = vec![
            Row {
                name: "a".into(),
                inner: Inner {
                    n: 1,
                    big: 1 << 40,
                    kind: Kind::Pear,
                },
                x: 0.5,
                ok: true,
            },
            Row::default(),
        ];
        let df = to_frame(&rows).unwrap();
        let names: Vec<&str> = df.get_column_names().iter().map(|n| n.as_str()).collect();
        assert_eq!(names, ["name", "n", "big", "kind", "x", "ok"]);
        assert_eq!(df.column("n").unwrap().dtype(), &DataType::UInt32);
        assert_eq!(df.column("big").unwrap().dtype(), &DataType::UInt64);
        assert_eq!(df.column("kind").unwrap().dtype(), &DataType::String);
        assert_eq!(from_frame::<Row>(&df).unwrap(), rows);
        let empty = to_frame::<Row>(&[]).unwrap();
        assert_eq!(empty.width(), 6);
        assert!(from_frame::<Row>(&empty).unwrap().is_empty());
        // A table from before a field existed reads it as its default.
        let older = df.drop("x").unwrap().drop("kind").unwrap();
        let read = from_frame::<Row>(&older).unwrap();
        assert_eq!((read[0].x, &read[0].inner.kind), (0.0, &Kind::default()));
        assert_eq!(read[0].inner.big, 1 << 40);
    }
}

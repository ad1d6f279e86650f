//! Tables whose columns come from a row type's own definition: a row is serialised
//! (serde, fields in declaration order, `#[serde(flatten)]` included) into typed cells,
//! and read back through serde, so a row's fields are written once, in its struct.
//!
//! Cell types map to Parquet columns one to one: `u32` → UInt32, `u64` (and `usize`)
//! → UInt64, `f64` → Float64, `bool` → Boolean, strings and unit enum variants (their
//! serde names) → String.

use polars::prelude::{AnyValue, Column, DataFrame, DataType, PolarsError, PolarsResult};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde::ser::{self, Impossible};

/// One cell of a row.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    U32(u32),
    U64(u64),
    F64(f64),
    Bool(bool),
    Str(String),
}

impl Cell {
    fn dtype(&self) -> DataType {
        match self {
            Cell::U32(_) => DataType::UInt32,
            Cell::U64(_) => DataType::UInt64,
            Cell::F64(_) => DataType::Float64,
            Cell::Bool(_) => DataType::Boolean,
            Cell::Str(_) => DataType::String,
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

/// A row's cells, named, in order.
fn cells<T: Serialize>(row: &T) -> PolarsResult<Vec<(String, Cell)>> {
    let (mut names, mut out) = (Vec::new(), Vec::new());
    fill(row, &mut out, Some(&mut names))?;
    Ok(names.into_iter().zip(out).collect())
}

/// Appends a row's cells to `out`, and their names to `names` if given (a table's
/// rows need their names once, not once a row).
fn fill<T: Serialize>(
    row: &T,
    out: &mut Vec<Cell>,
    names: Option<&mut Vec<String>>,
) -> PolarsResult<()> {
    row.serialize(RowSer { out, names })
        .map_err(|e| PolarsError::ComputeError(e.0.into()))
}

/// The table of `rows`: one column per field of `T` (its default gives the names and
/// types, so an empty table still has them).
pub fn to_frame<T: Serialize + Default>(rows: &[T]) -> PolarsResult<DataFrame> {
    let schema = cells(&T::default())?;
    let mut columns: Vec<Vec<Cell>> = vec![Vec::with_capacity(rows.len()); schema.len()];
    let mut row_cells = Vec::with_capacity(schema.len());
    for row in rows {
        row_cells.clear();
        fill(row, &mut row_cells, None)?;
        for (i, cell) in row_cells.drain(..).enumerate() {
            columns[i].push(cell);
        }
    }
    let columns = schema
        .iter()
        .zip(columns)
        .map(|((name, kind), values)| column(name, kind, values))
        .collect();
    DataFrame::new(rows.len(), columns)
}

fn column(name: &str, kind: &Cell, values: Vec<Cell>) -> Column {
    macro_rules! col {
        ($variant:ident) => {
            Column::new(
                name.into(),
                values
                    .into_iter()
                    .map(|c| match c {
                        Cell::$variant(v) => v,
                        other => unreachable!("{name}: a {other:?} among {:?}", kind),
                    })
                    .collect::<Vec<_>>(),
            )
        };
    }
    match kind {
        Cell::U32(_) => col!(U32),
        Cell::U64(_) => col!(U64),
        Cell::F64(_) => col!(F64),
        Cell::Bool(_) => col!(Bool),
        Cell::Str(_) => col!(Str),
    }
}

/// The rows of a table written by [`to_frame`] (or with the same columns): each column is
/// read as its field's type and every row deserialised; a field with no column (a
/// table written before it existed) takes its default.
pub fn from_frame<T: Serialize + DeserializeOwned + Default>(
    df: &DataFrame,
) -> PolarsResult<Vec<T>> {
    let schema = cells(&T::default())?;
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
struct RowSer<'a> {
    out: &'a mut Vec<Cell>,
    names: Option<&'a mut Vec<String>>,
}

/// Serialises one cell.
struct CellSer;

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

impl ser::Serializer for CellSer {
    type Ok = Cell;
    type Error = Unsupported;
    type SerializeSeq = Impossible<Cell, Unsupported>;
    type SerializeTuple = Impossible<Cell, Unsupported>;
    type SerializeTupleStruct = Impossible<Cell, Unsupported>;
    type SerializeTupleVariant = Impossible<Cell, Unsupported>;
    type SerializeMap = Impossible<Cell, Unsupported>;
    type SerializeStruct = Impossible<Cell, Unsupported>;
    type SerializeStructVariant = Impossible<Cell, Unsupported>;

    fn serialize_bool(self, v: bool) -> Result<Cell, Unsupported> {
        Ok(Cell::Bool(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Cell, Unsupported> {
        Ok(Cell::U32(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Cell, Unsupported> {
        Ok(Cell::U32(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Cell, Unsupported> {
        Ok(Cell::U32(v))
    }
    fn serialize_u64(self, v: u64) -> Result<Cell, Unsupported> {
        Ok(Cell::U64(v))
    }
    fn serialize_f32(self, v: f32) -> Result<Cell, Unsupported> {
        Ok(Cell::F64(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<Cell, Unsupported> {
        Ok(Cell::F64(v))
    }
    fn serialize_str(self, v: &str) -> Result<Cell, Unsupported> {
        Ok(Cell::Str(v.into()))
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Cell, Unsupported> {
        Ok(Cell::Str(variant.into()))
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Cell, Unsupported> {
        value.serialize(self)
    }
    refuse! {
        serialize_i8(i8) -> Cell: "a signed integer";
        serialize_i16(i16) -> Cell: "a signed integer";
        serialize_i32(i32) -> Cell: "a signed integer";
        serialize_i64(i64) -> Cell: "a signed integer";
        serialize_char(char) -> Cell: "a char";
        serialize_bytes(&[u8]) -> Cell: "bytes";
        serialize_none() -> Cell: "an option";
        serialize_unit() -> Cell: "a unit";
        serialize_unit_struct(&'static str) -> Cell: "a unit struct";
        serialize_seq(Option<usize>) -> Self::SerializeSeq: "a sequence";
        serialize_tuple(usize) -> Self::SerializeTuple: "a tuple";
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct: "a tuple";
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant: "a tuple";
        serialize_map(Option<usize>) -> Self::SerializeMap: "a map";
        serialize_struct(&'static str, usize) -> Self::SerializeStruct: "a struct";
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant: "a struct";
    }
    refuse_generic!(Cell, "an option or an enum with data");
}

impl<'a> ser::Serializer for RowSer<'a> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Impossible<(), Unsupported>;
    type SerializeTuple = Impossible<(), Unsupported>;
    type SerializeTupleStruct = Impossible<(), Unsupported>;
    type SerializeTupleVariant = Impossible<(), Unsupported>;
    type SerializeMap = MapSer<'a>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), Unsupported>;

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Unsupported> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<MapSer<'a>, Unsupported> {
        Ok(MapSer {
            out: self.out,
            names: self.names,
        })
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
        if let Some(names) = self.names.as_deref_mut() {
            names.push(key.into());
        }
        self.out.push(value.serialize(CellSer)?);
        Ok(())
    }

    fn end(self) -> Result<(), Unsupported> {
        Ok(())
    }
}

/// A row with flattened fields, which serde writes as a map of its fields.
struct MapSer<'a> {
    out: &'a mut Vec<Cell>,
    names: Option<&'a mut Vec<String>>,
}

impl ser::SerializeMap for MapSer<'_> {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Unsupported> {
        let Some(names) = self.names.as_deref_mut() else {
            return Ok(());
        };
        match key.serialize(CellSer)? {
            Cell::Str(k) => {
                names.push(k);
                Ok(())
            }
            _ => unsupported("a field named by a non-string"),
        }
    }

    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Unsupported> {
        self.out.push(value.serialize(CellSer)?);
        Ok(())
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

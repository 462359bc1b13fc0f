//! A captured table's shape at one source position: its columns in order,
//! their types and nullability, and which columns form the record key.
//!
//! A new shape (a DDL, a new Postgres Relation message) is a new
//! `TableSchema`; events hold the one current at their position, so a DDL is
//! a barrier: rows before it use the old shape, rows after it the new one.

use super::datum::{Datum, Row};
use super::table_id::TableId;
use super::types::ColumnType;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The name as the database stores it.
    pub name: String,
    pub ty: ColumnType,
    pub nullable: bool,
    /// The type as the database prints it (`numeric(12,2)`), for people and DDL.
    pub source_type: String,
}

impl Column {
    pub fn new(name: impl Into<String>, ty: ColumnType, nullable: bool) -> Column {
        let source_type = ty.name();
        Column {
            name: name.into(),
            ty,
            nullable,
            source_type,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    pub id: TableId,
    /// Postgres database or MySQL database the table lives in.
    pub database: String,
    pub columns: Vec<Column>,
    /// Indices into `columns` of the record key, in key order. Never empty.
    pub key: Vec<usize>,
}

impl TableSchema {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    pub fn key_columns(&self) -> impl Iterator<Item = &Column> {
        self.key.iter().filter_map(|i| self.columns.get(*i))
    }

    /// The key columns of a full row, in key order.
    pub fn key_of(&self, row: &Row) -> Row {
        Row(self
            .key
            .iter()
            .map(|i| row.get(*i).cloned().unwrap_or(Datum::Null))
            .collect())
    }
}

/// The renames between two shapes of a table, as index pairs `(old, new)`,
/// read from column names and types alone (neither source says "rename":
/// Postgres sends a new Relation message, a MySQL table map has no ids).
///
/// A column gone from `old` and one new in `new` (its name not in `old`)
/// are a rename when they have the same type and the same place: the
/// same nearest column both shapes share before them and as many columns
/// in between. Pairs by the column before are taken first; columns left
/// are then paired by the shared column after them (a column added in
/// the middle, as MySQL's `ADD ... AFTER` does, moves the columns before
/// but not after). So a rename is found together with adds and drops elsewhere
/// and with other renames, as when two DDLs reach the reader as one change
/// of shape. (A drop and an add of the same type at the same place, with
/// no row in between, look the same; renames are far more common.)
pub fn renamed_columns<'a>(
    old: &[(&'a str, &'a ColumnType)],
    new: &[(&'a str, &'a ColumnType)],
) -> Vec<(usize, usize)> {
    type Place<'a> = (Option<&'a str>, usize);
    // For each column not in `other`: its place from the shared column
    // before it and from the one after it.
    fn places<'a>(
        columns: &[(&'a str, &ColumnType)],
        other: &[(&str, &ColumnType)],
    ) -> Vec<(usize, Place<'a>, Place<'a>)> {
        let shared = |name: &str| other.iter().any(|(n, _)| *n == name);
        let mut out = Vec::new();
        for (i, (name, _)) in columns.iter().enumerate() {
            if shared(name) {
                continue;
            }
            let before = columns
                .iter()
                .take(i)
                .enumerate()
                .rev()
                .find(|(_, (n, _))| shared(n))
                .map_or((None, i + 1), |(j, (n, _))| (Some(*n), i - j));
            let after = columns
                .iter()
                .enumerate()
                .skip(i + 1)
                .find(|(_, (n, _))| shared(n))
                .map_or((None, columns.len() - i), |(j, (n, _))| (Some(*n), j - i));
            out.push((i, before, after));
        }
        out
    }
    let gone = places(old, new);
    let added = places(new, old);
    let ty = |columns: &[(&str, &'a ColumnType)], i: usize| columns.get(i).map(|(_, t)| *t);
    // A place is unique among each side's unpaired columns, so a match by
    // place is the only candidate on both sides.
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for by_after in [false, true] {
        let place = |p: &(usize, Place<'a>, Place<'a>)| if by_after { p.2 } else { p.1 };
        for g in &gone {
            if pairs.iter().any(|(o, _)| *o == g.0) {
                continue;
            }
            let found = added.iter().find(|a| {
                place(a) == place(g)
                    && ty(new, a.0) == ty(old, g.0)
                    && !pairs.iter().any(|(_, n)| *n == a.0)
            });
            if let Some(a) = found {
                pairs.push((g.0, a.0));
            }
        }
    }
    pairs.sort_unstable();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols<'a>(spec: &[(&'a str, &'a ColumnType)]) -> Vec<(&'a str, &'a ColumnType)> {
        spec.to_vec()
    }

    #[test]
    fn renames_are_found_beside_adds_drops_moves_and_other_renames() {
        let (i, t) = (
            ColumnType::Int {
                bits: 64,
                signed: true,
            },
            ColumnType::Text,
        );
        let renames = |old: &[(&str, &ColumnType)], new: &[(&str, &ColumnType)]| {
            renamed_columns(&cols(old), &cols(new))
        };
        // A plain rename, in the middle and at the end.
        assert_eq!(
            renames(
                &[("id", &i), ("a", &t), ("x", &t)],
                &[("id", &i), ("b", &t), ("x", &t)]
            ),
            vec![(1, 1)]
        );
        assert_eq!(
            renames(&[("id", &i), ("a", &t)], &[("id", &i), ("b", &t)]),
            vec![(1, 1)]
        );
        // A rename of the last column and an add after it, seen as one change.
        assert_eq!(
            renames(
                &[("id", &i), ("a", &t)],
                &[("id", &i), ("b", &t), ("c", &t)]
            ),
            vec![(1, 1)]
        );
        // Two renames at once; a rename beside a drop.
        assert_eq!(
            renames(
                &[("id", &i), ("a", &t), ("b", &t)],
                &[("id", &i), ("a2", &t), ("b2", &t)]
            ),
            vec![(1, 1), (2, 2)]
        );
        assert_eq!(
            renames(
                &[("id", &i), ("a", &t), ("b", &t), ("c", &t)],
                &[("id", &i), ("a2", &t), ("c", &t)]
            ),
            vec![(1, 1)]
        );
        // A column added in the middle before the renamed one (MySQL's
        // ADD ... AFTER): the shared column after it places the rename.
        assert_eq!(
            renames(
                &[("id", &i), ("a", &t), ("b", &t), ("c", &t), ("x", &t)],
                &[("id", &i), ("a", &t), ("x", &t), ("b2", &t), ("c", &t)]
            ),
            vec![(2, 3)]
        );
        // Not renames: another type; a drop in the middle and an add at
        // the end; a column on the other side of the key.
        assert!(renames(&[("id", &i), ("a", &t)], &[("id", &i), ("b", &i)]).is_empty());
        assert!(
            renames(
                &[("id", &i), ("a", &t), ("b", &t)],
                &[("id", &i), ("b", &t), ("d", &t)]
            )
            .is_empty()
        );
        assert!(renames(&[("a", &t), ("id", &i)], &[("id", &i), ("b", &t)]).is_empty());
    }
}

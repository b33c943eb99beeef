//! (being written)

use super::Ctx;
use crate::diag::Report;
use crate::path::FieldPath;

pub(super) fn validate_workload_entry<T>(
    _ctx: &Ctx<'_>,
    _spec: &T,
    _report: &mut Report<'_>,
    _at: &FieldPath<'_>,
) {
}
pub(super) fn validate_workload_group<T>(
    _ctx: &Ctx<'_>,
    _spec: &T,
    _report: &mut Report<'_>,
    _at: &FieldPath<'_>,
) {
}

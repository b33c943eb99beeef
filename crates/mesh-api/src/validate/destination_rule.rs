//! (being written)

use super::Ctx;
use crate::diag::Report;
use crate::path::FieldPath;

pub(super) fn validate<T>(
    _ctx: &Ctx<'_>,
    _spec: &T,
    _report: &mut Report<'_>,
    _at: &FieldPath<'_>,
) {
}

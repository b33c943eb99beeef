//! (being written)

use super::Ctx;
use crate::diag::Report;
use crate::path::FieldPath;

pub(super) fn validate_peer_authentication<T>(
    _ctx: &Ctx<'_>,
    _spec: &T,
    _report: &mut Report<'_>,
    _at: &FieldPath<'_>,
) {
}
pub(super) fn validate_authorization_policy<T>(
    _ctx: &Ctx<'_>,
    _spec: &T,
    _report: &mut Report<'_>,
    _at: &FieldPath<'_>,
) {
}
pub(super) fn validate_request_authentication<T>(
    _ctx: &Ctx<'_>,
    _spec: &T,
    _report: &mut Report<'_>,
    _at: &FieldPath<'_>,
) {
}

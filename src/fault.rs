//! Deliberate engine bugs, for the tests that show `denorm verify` catches them
//! (`tests/verify_catches.rs`). Built only with the `fault-injection` feature; then
//! `DENORM_FAULT=<name>` switches one on for the whole process. Without the feature [`on`] is a
//! constant `false`, so the hooks cost nothing and change nothing.

/// One deliberate bug, each at one place in the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Decode: integer timestamps in microseconds (a `timestamp(us)` column, Debezium's
    /// MicroTimestamp) are read as milliseconds.
    TimestampUnit,
    /// Lowering: the first two column fields of every object take each other's column.
    FieldIndex,
    /// Order: every `order_by` key sorts in the other direction.
    OrderDirection,
    /// Rendering: decimals are written with one more fraction digit than they have (ten times
    /// too small).
    DecimalScale,
    /// Writing: a deleted document gets an empty value instead of a null tombstone.
    EmptyTombstone,
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::TimestampUnit,
        Fault::FieldIndex,
        Fault::OrderDirection,
        Fault::DecimalScale,
        Fault::EmptyTombstone,
    ];

    /// The name `DENORM_FAULT` takes.
    pub fn name(self) -> &'static str {
        match self {
            Fault::TimestampUnit => "timestamp-unit",
            Fault::FieldIndex => "field-index",
            Fault::OrderDirection => "order-direction",
            Fault::DecimalScale => "decimal-scale",
            Fault::EmptyTombstone => "empty-tombstone",
        }
    }
}

/// Whether `fault` is switched on in this process.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn on(_fault: Fault) -> bool {
    false
}

/// Whether `fault` is switched on in this process (`DENORM_FAULT`, read once).
#[cfg(feature = "fault-injection")]
pub fn on(fault: Fault) -> bool {
    active() == Ok(Some(fault))
}

#[cfg(feature = "fault-injection")]
fn active() -> Result<Option<Fault>, String> {
    static ACTIVE: std::sync::OnceLock<Result<Option<Fault>, String>> = std::sync::OnceLock::new();
    ACTIVE
        .get_or_init(|| {
            let Ok(name) = std::env::var("DENORM_FAULT") else {
                return Ok(None);
            };
            Fault::ALL
                .into_iter()
                .find(|f| f.name() == name)
                .map(Some)
                .ok_or_else(|| {
                    let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                    format!(
                        "DENORM_FAULT={name} is no fault (one of: {})",
                        names.join(", ")
                    )
                })
        })
        .clone()
}

/// Fails on a `DENORM_FAULT` that names no fault; with the feature, says which fault is on.
pub fn check() -> anyhow::Result<()> {
    #[cfg(feature = "fault-injection")]
    {
        if let Some(fault) = active().map_err(|e| anyhow::anyhow!(e))? {
            tracing::warn!(
                fault = fault.name(),
                "fault injection: this process has a deliberate bug"
            );
        }
    }
    Ok(())
}

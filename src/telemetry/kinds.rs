//! The families of the kinds' own figures: race rounds, pub/sub deliveries, Redis operations,
//! SQL queries, the capacity probe's breaking point and the fault probe's recovery, error
//! ratios, backlog and clear. A kind with metrics of its own adds its families here.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::label::LabelValue;
use super::quantiles::LastRunQuantiles;
use super::{quantile_seconds, GaugeF, ProbeLabels};
use crate::config::Kind;
use crate::report::ProbeResult;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    probe: LabelValue,
    outcome: LabelValue,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultLabels {
    probe: LabelValue,
    fault: LabelValue,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultPhaseLabels {
    probe: LabelValue,
    fault: LabelValue,
    phase: LabelValue,
}

/// A data-store operation (Redis) or query (SQL): its name from the configuration, so the
/// cardinality is that of the configuration, never of the traffic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    probe: LabelValue,
    operation: LabelValue,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationErrorLabels {
    probe: LabelValue,
    operation: LabelValue,
    kind: LabelValue,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    probe: LabelValue,
    query: LabelValue,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryErrorLabels {
    probe: LabelValue,
    query: LabelValue,
    kind: LabelValue,
}

#[derive(Default)]
struct PubsubFamilies {
    delivery_ratio: Family<ProbeLabels, GaugeF>,
    published: Family<ProbeLabels, Counter>,
    delivered: Family<ProbeLabels, Counter>,
    lost: Family<ProbeLabels, Counter>,
    duplicates: Family<ProbeLabels, Counter>,
}

pub(super) struct KindFamilies {
    race_rounds: Family<OutcomeLabels, Counter>,
    pubsub: PubsubFamilies,
    redis_operations: Family<OperationLabels, Counter>,
    redis_operation_errors: Family<OperationErrorLabels, Counter>,
    redis_operation_latency: LastRunQuantiles,
    sql_queries: Family<QueryLabels, Counter>,
    sql_query_errors: Family<QueryErrorLabels, Counter>,
    sql_query_latency: LastRunQuantiles,
    breaking_point: Family<ProbeLabels, GaugeF>,
    fault_recovery: Family<FaultLabels, GaugeF>,
    fault_error_ratio: Family<FaultPhaseLabels, GaugeF>,
    fault_backlog_peak: Family<FaultLabels, GaugeF>,
    fault_cleared: Family<FaultLabels, Gauge>,
}

impl KindFamilies {
    pub(super) fn new() -> Self {
        KindFamilies {
            race_rounds: Family::default(),
            pubsub: PubsubFamilies::default(),
            redis_operations: Family::default(),
            redis_operation_errors: Family::default(),
            redis_operation_latency: LastRunQuantiles::with_labels(&["probe", "operation"]),
            sql_queries: Family::default(),
            sql_query_errors: Family::default(),
            sql_query_latency: LastRunQuantiles::with_labels(&["probe", "query"]),
            breaking_point: Family::default(),
            fault_recovery: Family::default(),
            fault_error_ratio: Family::default(),
            fault_backlog_peak: Family::default(),
            fault_cleared: Family::default(),
        }
    }

    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "breaking_point_rps",
            "Highest sustainable rate found by a capacity probe",
            self.breaking_point.clone(),
        );
        r.register(
            "race_rounds",
            "Race rounds by outcome (single_winner, multiple_winners, no_winner)",
            self.race_rounds.clone(),
        );
        r.register(
            "pubsub_delivery_ratio",
            "Distinct expected deliveries received / expected (published x subscribers) of the last run",
            self.pubsub.delivery_ratio.clone(),
        );
        r.register(
            "pubsub_published_messages",
            "Messages published successfully",
            self.pubsub.published.clone(),
        );
        r.register(
            "pubsub_delivered_messages",
            "Distinct expected deliveries received, all subscribers together",
            self.pubsub.delivered.clone(),
        );
        r.register(
            "pubsub_lost_messages",
            "Expected deliveries that never arrived within the grace period",
            self.pubsub.lost.clone(),
        );
        r.register(
            "pubsub_duplicate_messages",
            "Messages received again by a subscriber that already had them",
            self.pubsub.duplicates.clone(),
        );
        r.register(
            "redis_operations",
            "Redis operations by configured operation name",
            self.redis_operations.clone(),
        );
        r.register(
            "redis_operation_errors",
            "Failed Redis operations by configured operation name and error kind",
            self.redis_operation_errors.clone(),
        );
        r.register_with_unit(
            "redis_operation_latency",
            "Exact percentiles of the successful operations of the last run, by operation",
            Unit::Seconds,
            self.redis_operation_latency.clone(),
        );
        r.register(
            "sql_queries",
            "SQL queries by configured query name",
            self.sql_queries.clone(),
        );
        r.register(
            "sql_query_errors",
            "Failed SQL queries by configured query name and error kind",
            self.sql_query_errors.clone(),
        );
        r.register_with_unit(
            "sql_query_latency",
            "Exact percentiles of the successful queries of the last run, by query",
            Unit::Seconds,
            self.sql_query_latency.clone(),
        );
        r.register_with_unit(
            "fault_recovery",
            "Clear of the fault to steady again",
            Unit::Seconds,
            self.fault_recovery.clone(),
        );
        r.register(
            "fault_error_ratio",
            "Error ratio before, during and after a fault",
            self.fault_error_ratio.clone(),
        );
        r.register(
            "fault_backlog_peak",
            "Highest queue backlog sampled during the fault",
            self.fault_backlog_peak.clone(),
        );
        r.register(
            "fault_cleared",
            "1 when the last run's fault was cleared and its clear succeeded, 0 when not",
            self.fault_cleared.clone(),
        );
    }

    /// Writes the series of a run's kind block and per-operation figures.
    pub(super) fn record(&self, r: &ProbeResult) {
        let probe = ProbeLabels {
            probe: r.probe.as_str().into(),
        };
        if let Some(c) = r.capacity() {
            // A search that was stopped before it converged proves a lower bound only; the
            // gauge keeps the last converged value rather than drop to it.
            if !c.search.stopped_early && !c.steps.is_empty() {
                self.breaking_point
                    .get_or_create(&probe)
                    .set(c.breaking_point_rps);
            }
        }
        if let Some(f) = r.fault() {
            for x in &f.faults {
                let l = FaultLabels {
                    probe: r.probe.as_str().into(),
                    fault: x.name.as_str().into(),
                };
                // A fault that never came back within the run has no recovery time: the
                // gauge shows the whole time it was watched after the clear, a lower bound.
                let watched = x
                    .windows
                    .last()
                    .zip(x.clear_s)
                    .map(|(w, c)| (w.start_s + x.window_ms / 1000.0 - c).max(0.0));
                match x.recovery_s.or(watched) {
                    Some(v) => {
                        self.fault_recovery.get_or_create(&l).set(v);
                    }
                    None => {
                        self.fault_recovery.remove(&l);
                    }
                }
                for (phase, v) in [
                    ("before", x.error_rate.before),
                    ("during", x.error_rate.during),
                    ("after", x.error_rate.after),
                ] {
                    self.fault_error_ratio
                        .get_or_create(&FaultPhaseLabels {
                            probe: r.probe.as_str().into(),
                            fault: x.name.as_str().into(),
                            phase: phase.into(),
                        })
                        .set(v);
                }
                match x.backlog_peak {
                    Some(p) => {
                        self.fault_backlog_peak.get_or_create(&l).set(p);
                    }
                    None => {
                        self.fault_backlog_peak.remove(&l);
                    }
                }
                // Only a fault that was injected (or tried) needs clearing.
                if x.inject_s.is_some() {
                    self.fault_cleared
                        .get_or_create(&l)
                        .set(i64::from(x.clear_ok));
                } else {
                    self.fault_cleared.remove(&l);
                }
            }
        }
        if let Some(race) = r.race() {
            for (outcome, n) in [
                ("single_winner", race.single_winner),
                ("multiple_winners", race.multiple_winners),
                ("no_winner", race.no_winner),
            ] {
                self.race_rounds
                    .get_or_create(&OutcomeLabels {
                        probe: r.probe.as_str().into(),
                        outcome: outcome.into(),
                    })
                    .inc_by(n);
            }
        }
        self.record_store_series(r);
    }

    /// The series of the data-store kinds and pub/sub: deliveries, Redis operations, SQL
    /// queries.
    fn record_store_series(&self, r: &ProbeResult) {
        let probe = || LabelValue::from(r.probe.as_str());
        if let Some(p) = r.pubsub() {
            let l = ProbeLabels { probe: probe() };
            self.pubsub
                .delivery_ratio
                .get_or_create(&l)
                .set(p.delivery_ratio);
            for (family, n) in [
                (&self.pubsub.published, p.published),
                (&self.pubsub.delivered, p.delivered),
                (&self.pubsub.lost, p.lost),
                (&self.pubsub.duplicates, p.duplicates),
            ] {
                family.get_or_create(&l).inc_by(n);
            }
        }
        let (Some(stats), Kind::Redis | Kind::Sql) = (&r.stats, r.kind) else {
            return;
        };
        let latency = match r.kind {
            Kind::Sql => &self.sql_query_latency,
            _ => &self.redis_operation_latency,
        };
        // An operation renamed or removed by a reload leaves the last-run quantiles.
        latency.retain_probe(&r.probe, |k| {
            k.get(1).is_some_and(|op| stats.endpoints.contains_key(op))
        });
        for (op, e) in &stats.endpoints {
            if r.kind == Kind::Sql {
                self.sql_queries
                    .get_or_create(&QueryLabels {
                        probe: probe(),
                        query: op.into(),
                    })
                    .inc_by(e.requests);
                for (kind, n) in &e.errors_by_kind {
                    self.sql_query_errors
                        .get_or_create(&QueryErrorLabels {
                            probe: probe(),
                            query: op.into(),
                            kind: kind.into(),
                        })
                        .inc_by(*n);
                }
            } else {
                self.redis_operations
                    .get_or_create(&OperationLabels {
                        probe: probe(),
                        operation: op.into(),
                    })
                    .inc_by(e.requests);
                for (kind, n) in &e.errors_by_kind {
                    self.redis_operation_errors
                        .get_or_create(&OperationErrorLabels {
                            probe: probe(),
                            operation: op.into(),
                            kind: kind.into(),
                        })
                        .inc_by(*n);
                }
            }
            // Percentiles of successful operations only: an operation that always failed has
            // none to show (and not a row of zeros).
            if e.requests > e.errors {
                latency.set_keyed(
                    vec![r.probe.clone(), op.clone()],
                    quantile_seconds(&e.latency_ms),
                );
            } else {
                latency.retain_probe(&r.probe, |k| k.get(1) != Some(op));
            }
        }
    }

    /// Removes a probe's gauges and last-run quantiles (a reload dropped it).
    pub(super) fn forget(&self, probe: &str) {
        let l = ProbeLabels {
            probe: probe.into(),
        };
        self.breaking_point.remove(&l);
        self.pubsub.delivery_ratio.remove(&l);
        self.redis_operation_latency.remove(probe);
        self.sql_query_latency.remove(probe);
    }
}

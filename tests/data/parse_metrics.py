"""Parses a metrics exposition read from stdin with the official Python client's parsers
and prints every sample as JSON: [[name, {labels}, value], ...].

Usage: parse_metrics.py text|openmetrics
The OpenMetrics parser is strict (types, suffixes, # EOF); the text parser is what
Prometheus-style tooling has read for years. Either raises on malformed input.
"""
import json
import sys

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

fmt = sys.argv[1]
data = sys.stdin.read()
parse = parse_openmetrics if fmt == "openmetrics" else parse_text
out = []
types = {}
for family in parse(data):
    types[family.name] = family.type
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
json.dump({"samples": out, "types": types}, sys.stdout)

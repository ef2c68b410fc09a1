"""The verification engine: expectation specs (TOML) checked against an analysis.

One engine behind ``analyzer verify``, the scenarios of ``analyzer run`` and the pytest plugin
(``analyzer.testing``)::

    spec = load_spec("daytime.toml")          # or parse_spec(text), spec_from_tables(tcp=[...])
    checks = evaluate(spec, analyze("cap.pcapng"))
    failed = failures(checks)                 # Check: name, selector, field, expected, observed, passed

A spec holds ``[[tcp]]`` and ``[[udp]]`` tables. Each table selects flows, says how many must
match, and asserts on every matched flow::

    [[tcp]]
    server_port = 13                          # selectors: id, client_ip, client_port, server_ip, server_port
    count = 1                                 # N, [N, M], { min = N, max = M }; default { min = 1 }
    handshake = "complete"                    # a value, or an array of accepted values
    teardown = ["fin-4way", "fin-3way"]
    first_fin = "server"                      # client, server, none
    time_wait = "server"                      # client, server, both, none
    client_to_server_bytes = 0
    server_to_client = { min_bytes = 20, regex = '^\\d{4}-\\d{2}-\\d{2} ' }
    max_retransmissions = 0
    fields = { "handshake.options.client.mss" = 65495 }

TCP keys: ``handshake``, ``teardown``, ``first_fin``, ``time_wait``, ``rst_by``,
``zeek_conn_state``, ``history`` (Zeek), ``completeness`` (Wireshark), ``packets``,
``client_to_server_bytes``, ``server_to_client_bytes``, ``bytes_after_first_fin``,
``client_to_server`` / ``server_to_client`` (tables: ``bytes``, ``min_bytes``, ``max_bytes``,
``segments``, ``missing_bytes``, ``regex``, ``sha256``), ``max_retransmissions``,
``max_out_of_order``, ``max_dup_acks``, ``max_zero_windows``, ``max_syn_retransmits``,
``max_rtt_ms``, ``rst_in_time_wait``, ``reused_in_time_wait``, ``anomalies`` (the exact set of
anomaly names; ``[]`` for none) and ``fields`` (any scalar of the flow's report by its dotted
path; JSON null is written ``"none"``).

UDP keys: ``exchanges``, ``echo``, ``icmp_unreachable`` (true/false, or a count), ``datagrams``,
``client_to_server_bytes``, ``server_to_client_bytes``, ``client_to_server`` /
``server_to_client`` (tables: ``datagrams``, ``bytes``, ``min_bytes``, ``max_bytes``, ``regex``
- searched in every datagram that way), ``max_latency_ms`` and ``fields``.

Counts (``count``, byte and packet counts, ``completeness``...) take N, an array of accepted
values, or a range ``{ min = N, max = M }``. ``regex`` uses Python's ``re.search`` on the
reassembled bytes decoded as UTF-8, or as latin-1 when they are not valid UTF-8 (so ``\\xNN``
matches byte NN); add ``(?m)`` for ``^``/``$`` at every line, ``(?s)`` for ``.`` across lines.
"""

from __future__ import annotations

from analyzer.checks.engine import Check, assertion_message, evaluate, failures, selected, summary
from analyzer.checks.payload import Payloads, as_text
from analyzer.checks.spec import Rule, Spec, load_spec, parse_spec, spec_from_tables

__all__ = [
    "Check",
    "Payloads",
    "Rule",
    "Spec",
    "as_text",
    "assertion_message",
    "evaluate",
    "failures",
    "load_spec",
    "parse_spec",
    "selected",
    "spec_from_tables",
    "summary",
]

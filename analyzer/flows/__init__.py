"""Flow analysis: TCP connections (``analyzer.flows.tcp``) and UDP conversations
(``analyzer.flows.udp``) reconstructed from the packet table.

Modules are imported by their users (``from analyzer.flows.tcp import analyze_tcp``), so importing
this package stays free of pandas.
"""

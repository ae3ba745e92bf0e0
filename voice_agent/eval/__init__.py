"""The evaluation harness: real benchmark questions, typed or spoken, answered in every
mode; accuracy by rule-based answer checking and the delay a listener hears.

Modules: ``data`` (problem sets and loaders), ``fetch`` (``make eval-data``), ``check``
(answer checking), ``delay`` (the post-hoc listener-delay model), ``text`` and ``spoken``
(one problem through the engine, or through the whole session), ``report`` (results
files, tables, plots) and ``harness`` (modes × problems with progress bars).
"""

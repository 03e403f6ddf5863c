"""The JSON API under ``/api/v1``: one module per concept, each route naming its role
(``sakk.console.routes`` puts them together)."""

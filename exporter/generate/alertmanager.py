"""An Alertmanager configuration that routes by `priority` and lets a P1 silence the lower
priorities of the same node, except an alert naming a cause the P1 does not name. The webhook
receivers are loopback placeholders: replace them with your pager (PagerDuty, Opsgenie),
ticket and chat integrations."""

from __future__ import annotations

from typing import Any

from .yamlfile import dump

ALERTMANAGER_FILE = "alertmanager.yml"


def alertmanager_config(
    webhook_base: str = "http://127.0.0.1:9095", *, fast: bool = False
) -> dict[str, Any]:
    """The example configuration; `fast` shortens every wait (for tests)."""

    def timing(wait: str, interval: str, repeat: str) -> dict[str, str]:
        if fast:
            wait, interval, repeat = "1s", "1s", "1m"
        return {"group_wait": wait, "group_interval": interval, "repeat_interval": repeat}

    def receiver(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "webhook_configs": [{"url": f"{webhook_base}/{name}", "send_resolved": True}],
        }

    return {
        "route": {
            "receiver": "low-noise",
            "group_by": ["alertname", "node"],
            **timing("30s", "5m", "12h"),
            "routes": [
                {"matchers": ['priority="P1"'], "receiver": "pager", **timing("10s", "1m", "1h")},
                {"matchers": ['priority="P2"'], "receiver": "ticket", **timing("1m", "10m", "24h")},
                {
                    "matchers": ['priority="P3"'],
                    "receiver": "low-noise",
                    **timing("5m", "30m", "72h"),
                },
            ],
        },
        "inhibit_rules": [
            {
                # While a P1 fires on a node, its P2 and P3 alerts that name no cause are noise.
                "source_matchers": ['priority="P1"'],
                "target_matchers": ['priority=~"P2|P3"', 'cause=""'],
                "equal": ["node"],
            },
            {
                # An alert that names a cause (contention, an emergency check) is hidden only
                # by a P1 that names the same cause: the page never hides the only alert
                # that says why.
                "source_matchers": ['priority="P1"'],
                "target_matchers": ['priority=~"P2|P3"', 'cause!=""'],
                "equal": ["node", "cause"],
            },
        ],
        "receivers": [receiver("pager"), receiver("ticket"), receiver("low-noise")],
    }


def alertmanager_yaml() -> str:
    return dump(alertmanager_config(), "rules") + (
        "# The webhook URLs are placeholders on loopback: point `pager` at your paging\n"
        "# integration, `ticket` at your ticketing system and `low-noise` at a chat channel.\n"
    )

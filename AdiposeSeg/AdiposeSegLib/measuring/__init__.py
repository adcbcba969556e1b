"""From network classes to tissue labels and numbers: HU gating, statistics, agreement."""

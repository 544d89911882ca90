"""The portal's routes, one router per area: the box API (boxes), signing in (signin), the
customer's calls and recordings (calls), statistics and settings (office), the provider's fleet
(fleet). Each declares what it needs as dependencies (portal/deps.py)."""

"""The box's link to the cloud portal: enrolment, the outbox of CDRs and recordings, heartbeats."""

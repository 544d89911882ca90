"""The cloud portal: the fleet's sites, their call records and recordings, enrolment and sync API."""

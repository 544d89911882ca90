"""The call kinds of the feature server, on one base (base.Call): a bridged call between two
parties (bridged), an inbound call from a trunk with greeting and scenario (inbound), the
portal's call back (callback), a short tone notice (notice), and the transfer inside a call
(transfer). They are written against featureserver.model's protocols, never against pjsua2."""

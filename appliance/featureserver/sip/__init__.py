"""The feature server's pjsua2 adapter: the library and its accounts (endpoint), call legs
(leg), the conference bridge's players and recorders (media), and what an INVITE says (message).
The only part of the feature server that imports pjsua2."""

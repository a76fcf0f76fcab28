-- Prosody for the docker-compose demonstration (Prosody 13). Upload slots
-- come from mod_http_file_share with uploadgate as its external service: the
-- slot is a JWT (HS256) over the shared secret, which uploadgate checks.
--
-- Local only: plain c2s without TLS, published on 127.0.0.1:5222. For a real
-- server see docs/xmpp.md, and keep the secret in a file as below.

log = { { levels = { min = "info" }, to = "console" } }
data_path = "/var/lib/prosody"

c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
allow_registration = false
modules_disabled = { "s2s" }

VirtualHost "localhost"

Component "upload.localhost" "http_file_share"
	-- docker-compose.yml: --public-url plus the default --upload-base /upload/.
	http_file_share_base_url = "http://localhost:8080/upload/"
	-- The file the init service created and the gateways read (--secret-file).
	http_file_share_secret = FileLine("/run/uploadgate-keys/slot-secret")
	http_file_share_size_limit = 100 * 1024 * 1024

-- With prosody-modules' mod_http_upload_external (v2 signatures) instead:
--
-- Component "upload.localhost" "http_upload_external"
--	http_upload_external_base_url = "http://localhost:8080/upload/"
--	http_upload_external_secret = FileLine("/run/uploadgate-keys/slot-secret")
--	http_upload_external_protocol = "v2"
--	http_upload_external_file_size_limit = 100 * 1024 * 1024

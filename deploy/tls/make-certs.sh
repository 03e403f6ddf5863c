#!/usr/bin/env bash
# The certificates docker-compose.yml mounts: one CA, the Kafka broker's and PostgreSQL's
# server certificates, and one client certificate per Kafka principal (mutual TLS: the
# certificate's subject CN=<name> is the principal deploy/kafka/acls.sh grants rights to).
#
#   deploy/tls/make-certs.sh [OUT]        # OUT defaults to deploy/tls/out (git-ignored)
#
# Safe to repeat: what exists is kept (the CA, and each certificate already issued), so
# certificates handed out stay valid; delete a directory under OUT to issue it again.
# Needs openssl and keytool (any Java runtime: Kafka's truststore is a Java keystore).
# docs/operations.md, "Transport security", explains every step and how to rotate.
set -euo pipefail

OUT="${1:-$(cd "$(dirname "$0")" && pwd)/out}"
DAYS="${TLS_DAYS:-825}"        # leaf certificates; the CA lives 10 years
CA_DAYS="${TLS_CA_DAYS:-3650}"
# Banks that publish payments (reference/morocco.json); each gets CN=bank-<code>.
BANKS="${BANKS:-007 011 190 013 022 021 230 225 310}"
# Sakk's own principals: one per service, each with the least rights it needs.
SAKK_CLIENTS="sakk-init sakk-validator sakk-settlement sakk-notification sakk-simulator sakk-auditor"
KAFKA_UID=1000   # apache/kafka runs as appuser
SAKK_UID=10001   # Sakk's image user (Dockerfile)

for tool in openssl keytool; do
  command -v "$tool" >/dev/null 2>&1 || { echo "make-certs.sh: $tool is needed" >&2; exit 2; }
done
umask 077   # keys and passwords readable by their owner only
mkdir -p "$OUT"
cd "$OUT"

new_password() {  # new_password FILE: a random password, no trailing newline
  [ -s "$1" ] || openssl rand -hex 24 | tr -d '\n' > "$1"
}

# issue DIR NAME CN USAGE [SAN]: DIR/NAME.key (EC P-256, PKCS#8, unencrypted) + DIR/NAME.crt
issue() {
  local dir=$1 name=$2 cn=$3 usage=$4 san=${5:-}
  [ -s "$dir/$name.crt" ] && return 0
  mkdir -p "$dir"
  {
    echo "basicConstraints = critical, CA:FALSE"
    echo "keyUsage = critical, digitalSignature"
    echo "extendedKeyUsage = $usage"
    [ -z "$san" ] || echo "subjectAltName = $san"
  } > "$dir/$name.ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$cn" \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA ca/ca.crt -CAkey ca/ca.key -set_serial "0x$(openssl rand -hex 16)" \
    -days "$DAYS" -sha256 -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null
  rm -f "$dir/$name.csr" "$dir/$name.ext"
  cp ca/ca.crt "$dir/ca.crt"
  chmod 0644 "$dir/ca.crt"
}

# 1. The CA. Its key signs every certificate below: keep ca/ca.key offline in production.
if [ ! -s ca/ca.crt ]; then
  mkdir -p ca
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days "$CA_DAYS" \
    -subj "/CN=Sakk CA" -keyout ca/ca.key -out ca/ca.crt \
    -addext "basicConstraints = critical, CA:TRUE, pathlen:0" \
    -addext "keyUsage = critical, keyCertSign, cRLSign" 2>/dev/null
  chmod 0644 ca/ca.crt
fi

# 2. The Kafka broker (principal CN=kafka, a super user): PKCS#12 keystore and truststore,
#    as the apache/kafka image reads them from /etc/kafka/secrets, with their passwords.
issue kafka kafka kafka "serverAuth, clientAuth" "DNS:kafka, DNS:localhost, IP:127.0.0.1"
new_password kafka/kafka.keystore.password
new_password kafka/kafka.truststore.password
[ -s kafka/kafka.keystore.p12 ] || openssl pkcs12 -export -name kafka \
  -in kafka/kafka.crt -inkey kafka/kafka.key -certfile ca/ca.crt \
  -passout file:kafka/kafka.keystore.password -out kafka/kafka.keystore.p12
[ -s kafka/kafka.truststore.p12 ] || keytool -importcert -noprompt -alias sakk-ca \
  -file ca/ca.crt -storetype PKCS12 -keystore kafka/kafka.truststore.p12 \
  -storepass:file kafka/kafka.truststore.password >/dev/null
# The broker's own client settings (its health check runs kafka-broker-api-versions.sh).
cat > kafka/client.properties <<EOF
security.protocol=SSL
ssl.keystore.type=PKCS12
ssl.keystore.location=/etc/kafka/secrets/kafka.keystore.p12
ssl.keystore.password=$(cat kafka/kafka.keystore.password)
ssl.key.password=$(cat kafka/kafka.keystore.password)
ssl.truststore.type=PKCS12
ssl.truststore.location=/etc/kafka/secrets/kafka.truststore.p12
ssl.truststore.password=$(cat kafka/kafka.truststore.password)
EOF

# 3. The operators' Kafka tools (principal CN=sakk-admin, a super user): ACLs, topics, groups.
issue kafka-admin admin sakk-admin clientAuth
new_password kafka-admin/admin.password
[ -s kafka-admin/admin.keystore.p12 ] || openssl pkcs12 -export -name sakk-admin \
  -in kafka-admin/admin.crt -inkey kafka-admin/admin.key -certfile ca/ca.crt \
  -passout file:kafka-admin/admin.password -out kafka-admin/admin.keystore.p12
[ -s kafka-admin/truststore.p12 ] || keytool -importcert -noprompt -alias sakk-ca \
  -file ca/ca.crt -storetype PKCS12 -keystore kafka-admin/truststore.p12 \
  -storepass:file kafka-admin/admin.password >/dev/null
cat > kafka-admin/admin.properties <<EOF
security.protocol=SSL
ssl.keystore.type=PKCS12
ssl.keystore.location=/etc/kafka/admin/admin.keystore.p12
ssl.keystore.password=$(cat kafka-admin/admin.password)
ssl.key.password=$(cat kafka-admin/admin.password)
ssl.truststore.type=PKCS12
ssl.truststore.location=/etc/kafka/admin/truststore.p12
ssl.truststore.password=$(cat kafka-admin/admin.password)
EOF

# 4. PostgreSQL's server certificate (the engine connects with sslmode=verify-full).
issue postgres server postgres serverAuth "DNS:postgres, DNS:localhost, IP:127.0.0.1"

# 5. Sakk's services and the banks: PEM files, as SAKK_KAFKA_SSL_CAFILE, _CERTFILE, _KEYFILE.
for name in $SAKK_CLIENTS; do
  issue "$name" client "$name" clientAuth
done
for code in $BANKS; do
  issue "banks/bank-$code" client "bank-$code" clientAuth
done

# 6. Owners: each container reads its own files as its own user.
if [ "$(id -u)" = 0 ]; then
  chown -R "$KAFKA_UID:$KAFKA_UID" kafka kafka-admin
  for name in $SAKK_CLIENTS; do chown -R "$SAKK_UID:$SAKK_UID" "$name"; done
else
  echo "make-certs.sh: not root, so the files are yours; before docker compose up run:" >&2
  echo "  sudo chown -R $KAFKA_UID:$KAFKA_UID $OUT/kafka $OUT/kafka-admin" >&2
  echo "  sudo chown -R $SAKK_UID:$SAKK_UID $(for n in $SAKK_CLIENTS; do printf '%s ' "$OUT/$n"; done)" >&2
fi
echo "certificates in $OUT"

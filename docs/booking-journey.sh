#!/usr/bin/env bash
# The whole citizen journey against a running demo, with nothing but curl and python3:
#
#   guahao demo                      # or: bash infra/demo.sh
#   bash docs/booking-journey.sh     # GUAHAO_URL=http://127.0.0.1:9000 to point elsewhere
#
# Registering sends a code to the phone; the demo prints its text messages on its console
# ("SMS to 139****1234: …"). The script asks you for the code, or reads it itself from the
# demo's output when GUAHAO_DEMO_LOG names a file that output goes to
# (guahao demo > demo.log 2>&1 &  GUAHAO_DEMO_LOG=demo.log bash docs/booking-journey.sh).
#
# register (and its code) → sign in → add a patient → 澜江市第一人民医院 → 心内科 → the first doctor with a
# free slot → hold (锁号) → choose the patient → submit (self-pay) → pay at the sandbox
# cashier → the confirmed booking → cancel (退号). Each run registers a new phone number, so
# it can be repeated against the same demo. Any refusal stops the script and prints the
# platform's answer ({"code", "message": {"zh", "en"}, "detail"}).
set -euo pipefail
shopt -s inherit_errexit

BASE="${GUAHAO_URL:-http://127.0.0.1:8000}"
BASE="${BASE%/}"
API="$BASE/api/v1"
PHONE="$(printf '139%04d%04d' $((RANDOM % 10000)) $((RANDOM % 10000)))"
PASSWORD="journey-pass-1"
ID_NUMBER="11010519491231002X"

step() { printf '\n==> %s\n' "$*"; }
show() { printf '    %s\n' "$@"; }

# call METHOD URL [curl args…]: the response body; a non-2xx answer prints it and stops.
call() {
    local method="$1" url="$2" answer status
    shift 2
    if ! answer="$(curl -sS -X "$method" "$url" -w '\n%{http_code}' "$@")"; then
        printf '\n!! could not reach %s (is `guahao demo` running there?)\n' "$url" >&2
        exit 1
    fi
    status="${answer##*$'\n'}"
    answer="${answer%$'\n'*}"
    if [[ "$status" != 2* ]]; then
        printf '\n!! %s %s answered HTTP %s:\n%s\n' "$method" "$url" "$status" "$answer" >&2
        exit 1
    fi
    printf '%s' "$answer"
}

# field JSON EXPR: evaluate the Python expression EXPR on the parsed JSON, bound to `d`.
field() {
    python3 -c 'import json, sys; d = json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}

JSON=(-H 'content-type: application/json')

step "Is the platform up? ($BASE)"
health="$(call GET "$BASE/health")"
show "status: $(field "$health" 'd["status"]'), version $(field "$health" 'd["version"]')"

# code_for MASKED: the last six-digit code the demo printed for the masked phone (from
# GUAHAO_DEMO_LOG, waiting a few seconds for it), else asked for on the terminal.
code_for() {
    local masked="$1" code="" tries=0
    if [[ -n "${GUAHAO_DEMO_LOG:-}" ]]; then
        while [[ -z "$code" && $tries -lt 50 ]]; do
            code="$(grep -F "SMS to $masked:" "$GUAHAO_DEMO_LOG" | tail -n 1 \
                | sed -n 's/.*SMS to [^:]*: [^0-9]*\([0-9]\{6\}\).*/\1/p')" || true
            [[ -n "$code" ]] || { sleep 0.2; tries=$((tries + 1)); }
        done
    fi
    if [[ -z "$code" ]]; then
        read -r -p "    the code the demo printed for $masked: " code
    fi
    printf '%s' "$code"
}

step "1. Register an account ($PHONE)"
sent="$(call POST "$API/accounts" "${JSON[@]}" \
    -d "{\"phone\": \"$PHONE\", \"password\": \"$PASSWORD\", \"displayName\": \"journey\"}")"
MASKED="$(field "$sent" 'd["sentTo"]')"
show "a code was sent to $MASKED (the same answer whether or not the phone has an account)"
CODE="$(code_for "$MASKED")"
account="$(call POST "$API/accounts/confirm" "${JSON[@]}" \
    -d "{\"phone\": \"$PHONE\", \"code\": \"$CODE\"}")"
show "account: $(field "$account" 'd["accountId"]')"

step "2. Sign in"
token_json="$(call POST "$API/auth/token" "${JSON[@]}" \
    -d "{\"phone\": \"$PHONE\", \"password\": \"$PASSWORD\"}")"
TOKEN="$(field "$token_json" 'd["accessToken"]')"
AUTH=(-H "authorization: Bearer $TOKEN")
show "bearer token, valid for $(field "$token_json" 'd["expiresIn"]') s"

step "3. Add a patient (就诊人)"
patient="$(call POST "$API/me/patients" "${AUTH[@]}" "${JSON[@]}" \
    -d "{\"name\": \"张三\", \"documentType\": \"resident_id\", \"documentNumber\": \"$ID_NUMBER\"}")"
PATIENT_ID="$(field "$patient" 'd["id"]')"
show "patient $(field "$patient" 'd["name"]'), document shown as $(field "$patient" 'd["documentMasked"]')"

step "4. Find 澜江市第一人民医院 → 心内科"
hospitals="$(call GET "$API/hospitals")"
HOSPITAL_ID="$(field "$hospitals" 'next(h["id"] for h in d if h["code"] == "city-first")')"
show "hospital: 澜江市第一人民医院 ($HOSPITAL_ID)"
departments="$(call GET "$API/hospitals/$HOSPITAL_ID/departments")"
DEPARTMENT_ID="$(field "$departments" 'next(x["id"] for x in d if x["name"] == "心内科")')"
show "department: 心内科 ($DEPARTMENT_ID)"
doctors="$(call GET "$API/departments/$DEPARTMENT_ID/doctors")"
show "$(field "$doctors" 'len(d)') doctors"

# The hospital's cancellation deadline is 15:00 (Beijing time) the day before the visit, so
# the search starts the day after tomorrow: the booking made here can still be cancelled.
read -r FROM TO < <(python3 -c '
from datetime import datetime, timedelta, timezone
today = datetime.now(timezone(timedelta(hours=8))).date()
print(today + timedelta(days=2), today + timedelta(days=7))')

step "5. The first doctor with a free slot between $FROM and $TO"
SLOT_ID=""
for DOCTOR_ID in $(field "$doctors" '" ".join(x["id"] for x in d)'); do
    sessions="$(call GET "$API/doctors/$DOCTOR_ID/availability?from=$FROM&to=$TO")"
    found="$(field "$sessions" '" ".join(next(([s["id"], x["date"], x["period"], str(x["feeCents"]), s["startsAt"]] for x in d if x["released"] for s in x["slots"] if s["available"] > 0), []))')"
    if [[ -n "$found" ]]; then
        read -r SLOT_ID DAY PERIOD FEE STARTS <<<"$found"
        DOCTOR_NAME="$(field "$doctors" "next(x['name'] + ' ' + x['title'] for x in d if x['id'] == '$DOCTOR_ID')")"
        break
    fi
done
if [[ -z "$SLOT_ID" ]]; then
    echo "!! no 心内科 doctor has a free slot between $FROM and $TO" >&2
    exit 1
fi
show "doctor: $DOCTOR_NAME" "session: $DAY $PERIOD, fee ¥$(field "$FEE" 'f"{d / 100:.2f}"')" \
    "slot: $SLOT_ID starting $STARTS"

step "6. Hold the slot (锁号)"
held="$(call POST "$API/holds" "${AUTH[@]}" "${JSON[@]}" \
    -H "Idempotency-Key: journey-$PHONE" -d "{\"slotId\": \"$SLOT_ID\"}")"
BOOKING_ID="$(field "$held" 'd["id"]')"
show "booking $BOOKING_ID: $(field "$held" 'd["status"]') until $(field "$held" 'd["holdExpiresAt"]')"

step "7. Choose the patient"
chosen="$(call PUT "$API/bookings/$BOOKING_ID/patient" "${AUTH[@]}" "${JSON[@]}" \
    -d "{\"patientId\": \"$PATIENT_ID\"}")"
show "status: $(field "$chosen" 'd["status"]')"

step "8. Submit, paying online (self-pay)"
submitted="$(call POST "$API/bookings/$BOOKING_ID/submit" "${AUTH[@]}" "${JSON[@]}" \
    -d '{"channel": "self_pay"}')"
PAY_URL="$(field "$submitted" 'd["payUrl"]')"
show "status: $(field "$submitted" 'd["status"]')" \
    "order: $(field "$submitted" 'd["paymentOrderNo"]'), pay by $(field "$submitted" 'd["paymentExpiresAt"]')" \
    "cashier: $PAY_URL"

step "9. Pay at the sandbox cashier"
paid="$(call POST "$PAY_URL?channel=self_pay")"
show "gateway notice handled: $(field "$paid" 'd["result"]')"

step "10. The booking"
booking="$(call GET "$API/bookings/$BOOKING_ID" "${AUTH[@]}")"
show "status: $(field "$booking" 'd["status"]'), paid: $(field "$booking" 'd["paid"]')" \
    "$(field "$booking" 'd["hospitalName"] + " " + d["departmentName"] + " " + d["doctorName"]'), $(field "$booking" 'd["startsAt"]')"

step "11. Cancel it (退号)"
cancelled="$(call POST "$API/bookings/$BOOKING_ID/cancel" "${AUTH[@]}")"
show "status: $(field "$cancelled" 'd["status"]') (reason: $(field "$cancelled" 'd["endReason"]'))"

printf '\nDone: booking %s was confirmed, then cancelled.\n' "$BOOKING_ID"

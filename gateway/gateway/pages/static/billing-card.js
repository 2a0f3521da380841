/* Clientele: a new card for a subscription (loaded after Stripe.js, on that page only).
   - Asks the page for a SetupIntent (…/card/setup), mounts Stripe's Card Element.
   - "Save card" runs confirmCardSetup, then posts the payment method to …/card;
     payments makes it the subscription's card and, when a payment is due, charges it.
   - Shows "Card updated" and the subscription's new status, or what went wrong.
   Nothing here decides that a payment went through: payments does, from Stripe. */
(function () {
  "use strict";

  var root = document.getElementById("update-card");
  if (!root) return;
  var path = root.getAttribute("data-path");
  var form = root.querySelector("form[data-card-form]");
  if (!form) return;
  var button = form.querySelector("[data-card-button]");
  var buttonLabel = button.innerHTML;
  var errorBox = document.getElementById("card-error");
  var errorText = document.getElementById("card-error-text");
  var doneBox = document.getElementById("card-done");
  var doneText = document.getElementById("card-done-text");
  var GENERIC = "Your card could not be used. Check the details or try another card.";

  function showError(message) {
    errorText.textContent = message || GENERIC;
    errorBox.hidden = false;
    errorBox.setAttribute("tabindex", "-1");
    errorBox.focus();
  }

  function clearError() {
    errorBox.hidden = true;
    errorText.textContent = "";
  }

  function setBusy(on) {
    root.setAttribute("aria-busy", on ? "true" : "false");
    button.disabled = on;
    if (on) button.textContent = "Working\u2026";
    else button.innerHTML = buttonLabel;
  }

  function post(suffix, fields) {
    var body = new URLSearchParams();
    body.set("csrf_token", root.getAttribute("data-csrf"));
    body.set("token", root.getAttribute("data-token") || "");
    Object.keys(fields || {}).forEach(function (name) { body.set(name, fields[name]); });
    return fetch(path + suffix, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Accept": "application/json",
        "Content-Type": "application/x-www-form-urlencoded"
      },
      body: body.toString()
    }).then(function (response) {
      return response.json().catch(function () {
        return { status: "error", error: "Something went wrong. Please try again." };
      });
    }, function () {
      return { status: "error", error: "We could not reach Clientele. Check your connection and try again." };
    });
  }

  var stripe = null;
  var card = null;
  var setup = null; // {publishable_key, client_secret}; null once used

  function prepare() {
    return post("/setup").then(function (answer) {
      if (answer.status !== "ok" || !answer.client_secret) {
        showError(answer.error || "The card form could not load. Please reload the page.");
        return null;
      }
      setup = answer;
      return answer;
    });
  }

  prepare().then(function (answer) {
    if (!answer) return;
    if (typeof window.Stripe !== "function") {
      showError("The card form could not load. Check your connection and reload the page.");
      return;
    }
    stripe = window.Stripe(answer.publishable_key);
    card = stripe.elements().create("card", {});
    card.mount("#card-element");
    button.disabled = false;
  });

  function done(answer) {
    doneText.textContent = answer.message || "Card updated.";
    doneBox.hidden = false;
    var status = document.getElementById("card-status");
    if (status && answer.status_label) {
      status.textContent = answer.status_label;
      status.className = "badge " + (answer.subscription_status === "past_due" ? "badge--danger" : "badge--success");
    }
    var current = document.getElementById("card-current");
    if (current && answer.card_label) current.textContent = answer.card_label;
    var next = document.getElementById("card-next");
    if (next && answer.next_charge_label) next.textContent = answer.next_charge_label;
    root.setAttribute("data-status", answer.subscription_status || "");
    if (answer.subscription_status === "past_due") {
      // Still due: another card may be tried, with a fresh SetupIntent.
      setBusy(false);
      return;
    }
    document.getElementById("card-form-section").hidden = true;
    doneBox.setAttribute("tabindex", "-1");
    doneBox.focus();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!stripe || root.getAttribute("aria-busy") === "true") return;
    clearError();
    doneBox.hidden = true;
    setBusy(true);
    (setup ? Promise.resolve(setup) : prepare()).then(function (current) {
      if (!current) {
        setBusy(false);
        return null;
      }
      return stripe.confirmCardSetup(current.client_secret, {
        payment_method: { card: card }
      }).then(function (result) {
        if (result.error) {
          showError((result.error && result.error.message) || GENERIC);
          setBusy(false);
          return null;
        }
        setup = null; // a confirmed SetupIntent is spent: the next try gets a new one
        var method = result.setupIntent && result.setupIntent.payment_method;
        if (method && typeof method === "object") method = method.id;
        if (!method) {
          showError(GENERIC);
          setBusy(false);
          return null;
        }
        return post("", {
          payment_method_id: method,
          was_status: root.getAttribute("data-status") || ""
        }).then(function (answer) {
          if (answer.status === "ok") {
            done(answer);
          } else {
            showError(answer.error);
            setBusy(false);
          }
        });
      });
    });
  });
})();

/* Clientele checkout: the payment step (loaded after Stripe.js, on that page only).
   - Mounts Stripe's Card Element; "Pay" runs confirmCardSetup on the order's
     SetupIntent, then posts the payment method to /orders/<id>/pay.
   - Saved-card buttons post their card to /orders/<id>/pay in one click.
   - requires_action: confirmCardPayment (3-D Secure), then /orders/<id>/refresh.
   - paid (or still settling): on to the processing page, which waits for payments.
   - failed: the reason is shown, and a button starts a new order for another card.
   Nothing here decides that an order is paid: payments does, from Stripe. */
(function () {
  "use strict";

  var root = document.getElementById("pay");
  if (!root) return;
  var orderPath = "/orders/" + root.getAttribute("data-order");
  var errorBox = document.getElementById("pay-error");
  var errorText = document.getElementById("pay-error-text");
  var retry = document.getElementById("pay-retry");
  var methods = document.getElementById("pay-methods");
  var cardForm = root.querySelector("form[data-stripe-pay]");
  var payButton = cardForm && cardForm.querySelector("[data-pay-button]");
  var BUSY = "Working\u2026";

  function showError(message, final) {
    errorText.textContent = message || "The payment did not go through. Please try again.";
    errorBox.hidden = false;
    if (final) {
      // This order cannot be paid any more: a new one, with another card.
      methods.hidden = true;
      retry.hidden = false;
      var again = retry.querySelector("button");
      if (again) again.focus();
    } else {
      errorBox.setAttribute("tabindex", "-1");
      errorBox.focus();
    }
  }

  function clearError() {
    errorBox.hidden = true;
    errorText.textContent = "";
  }

  var busyButtons = [];
  function setBusy(on) {
    root.setAttribute("aria-busy", on ? "true" : "false");
    root.querySelectorAll("#pay-methods button").forEach(function (button) {
      if (on) {
        button.setAttribute("data-label", button.innerHTML);
        button.textContent = BUSY;
        button.disabled = true;
        busyButtons.push(button);
      } else if (button.hasAttribute("data-label")) {
        button.innerHTML = button.getAttribute("data-label");
        button.removeAttribute("data-label");
        button.disabled = false;
      }
    });
    if (!on) busyButtons = [];
  }

  function post(path, fields) {
    var body = new URLSearchParams();
    body.set("csrf_token", root.getAttribute("data-csrf"));
    body.set("back", root.getAttribute("data-back"));
    Object.keys(fields || {}).forEach(function (name) { body.set(name, fields[name]); });
    return fetch(orderPath + path, {
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
  function stripeClient() {
    if (!stripe && typeof window.Stripe === "function") {
      stripe = window.Stripe(root.getAttribute("data-publishable-key"));
    }
    return stripe;
  }

  // What /pay and /refresh answered: go on, authenticate, or explain.
  function settle(answer, authenticated) {
    if (answer.status === "requires_action" && !authenticated && answer.client_secret) {
      var client = stripeClient();
      if (!client) {
        showError("The card needs a confirmation we cannot show here. Please reload the page.", false);
        setBusy(false);
        return;
      }
      client.confirmCardPayment(answer.client_secret).then(function () {
        // Whatever the browser saw, payments asks Stripe what really happened.
        return post("/refresh").then(function (again) { settle(again, true); });
      });
      return;
    }
    if (answer.status === "failed") {
      showError(answer.error, true);
      setBusy(false);
      return;
    }
    if (answer.status === "requires_action") {
      showError("The card was not confirmed. Nothing was charged. Try again or use another card.", true);
      setBusy(false);
      return;
    }
    if (answer.status === "error") {
      showError(answer.error, false);
      setBusy(false);
      return;
    }
    window.location.assign(answer.next || orderPath + "/processing");
  }

  function pay(paymentMethodId) {
    return post("/pay", { payment_method_id: paymentMethodId }).then(function (answer) {
      settle(answer, false);
    });
  }

  // -- saved cards: one click ----------------------------------------------------------------

  root.querySelectorAll("form[data-saved-card]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (root.getAttribute("aria-busy") === "true") return;
      clearError();
      setBusy(true);
      pay(form.elements.namedItem("payment_method_id").value);
    });
  });

  // -- a new card with Stripe.js --------------------------------------------------------------

  if (!cardForm) return;
  var client = stripeClient();
  if (!client) {
    showError("The card form could not load. Check your connection and reload the page.", false);
    return;
  }
  var card = client.elements().create("card", {});
  card.mount("#card-element");
  payButton.disabled = false;

  cardForm.addEventListener("submit", function (event) {
    event.preventDefault();
    if (root.getAttribute("aria-busy") === "true") return;
    clearError();
    setBusy(true);
    var billing = {};
    var name = root.getAttribute("data-buyer-name");
    var email = root.getAttribute("data-buyer-email");
    if (name) billing.name = name;
    if (email) billing.email = email;
    client.confirmCardSetup(root.getAttribute("data-client-secret"), {
      payment_method: { card: card, billing_details: billing }
    }).then(function (result) {
      if (result.error) {
        var message = (result.error && result.error.message) ||
          "Your card could not be used. Check the details or try another card.";
        showError(message, false);
        setBusy(false);
        return;
      }
      var method = result.setupIntent && result.setupIntent.payment_method;
      if (method && typeof method === "object") method = method.id;
      if (!method) {
        showError("Your card could not be used. Check the details or try another card.", false);
        setBusy(false);
        return;
      }
      return pay(method);
    });
  });
})();

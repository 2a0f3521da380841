/* Clientele web UI: progressive enhancement only. Every page works without it.
   - A submitted form's buttons are disabled and say "Working…" (no double submits).
   - Password inputs marked data-password-toggle get a Show/Hide button.
   - Buttons marked data-copy="some-id" copy the text of #some-id.
   - Forms marked data-confirm="Question?" ask before submitting.
   - Forms marked data-require-checked="name" need one checked box of that name.
   - A checkbox marked data-select-all="name" (hidden until now) ticks them all.
   - <time data-relative> shows "3 days ago", keeping the exact date as a tooltip.
   - [data-autofocus] gets focus on load (results after a form post).
   - The current tab of a sideways-scrolling .subnav is scrolled into view.
   - In a form, [data-show-when="field:value1 value2"] shows only while that
     field (a select or radio group) has one of those values.
   - A link [data-dialog-open="id"] opens <dialog id> as a modal (without
     JavaScript it targets #id, which CSS shows inline). */
(function () {
  "use strict";

  var BUSY_LABEL = "Working\u2026";

  // A polite live region for short announcements ("Copied").
  var announcer = null;
  function announce(text) {
    if (!announcer) {
      announcer = document.createElement("span");
      announcer.className = "visually-hidden";
      announcer.setAttribute("role", "status");
      announcer.setAttribute("aria-live", "polite");
      document.body.appendChild(announcer);
    }
    announcer.textContent = "";
    window.setTimeout(function () { announcer.textContent = text; }, 50);
  }

  // -- forms: confirm, require a selection ----------------------------------
  // Capture phase: these run before the busy-state handler below, which
  // leaves the form alone when the submission was cancelled.

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    if (form.getAttribute("data-submitting") === "true") return;
    var required = form.getAttribute("data-require-checked");
    if (required) {
      var boxes = form.querySelectorAll('input[type="checkbox"][name="' + required + '"]');
      var checked = Array.prototype.some.call(boxes, function (box) { return box.checked; });
      if (!checked) {
        event.preventDefault();
        var message = form.getAttribute("data-require-message") || "Select at least one first.";
        announce(message);
        var hint = form.querySelector(".form-hint-js");
        if (!hint) {
          hint = document.createElement("p");
          hint.className = "field__error form-hint-js";
          var footer = form.querySelector(".card__footer, .form__footer") || form;
          footer.appendChild(hint);
        }
        hint.textContent = message;
        if (boxes.length) boxes[0].focus();
        return;
      }
    }
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  }, true);

  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!(box instanceof HTMLInputElement) || box.type !== "checkbox") return;
    var form = box.form;
    var hint = form && form.querySelector(".form-hint-js");
    if (hint && box.checked) hint.remove();
    var all = box.getAttribute("data-select-all");
    if (all && form) {
      form.querySelectorAll('input[type="checkbox"][name="' + all + '"]').forEach(function (other) {
        other.checked = box.checked;
      });
      return;
    }
    if (form && box.name) {
      var master = form.querySelector('input[data-select-all="' + box.name + '"]');
      if (master) {
        var boxes = form.querySelectorAll('input[type="checkbox"][name="' + box.name + '"]');
        var on = Array.prototype.filter.call(boxes, function (b) { return b.checked; }).length;
        master.checked = on === boxes.length;
        master.indeterminate = on > 0 && on < boxes.length;
      }
    }
  });

  document.querySelectorAll("input[data-select-all]").forEach(function (box) {
    box.hidden = false;
    var label = box.previousElementSibling;
    if (label && label.classList.contains("visually-hidden")) label.remove();
  });

  // -- forms: one submission at a time ---------------------------------------

  function submitButtons(form) {
    return form.querySelectorAll('button[type="submit"], button:not([type]), input[type="submit"]');
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    if (form.getAttribute("method") === "dialog") return; // closes a dialog; nothing is sent
    if (form.getAttribute("data-submitting") === "true") {
      event.preventDefault();
      return;
    }
    // Let other handlers (and the browser) decide first; then lock the form.
    window.setTimeout(function () {
      if (event.defaultPrevented) return;
      form.setAttribute("data-submitting", "true");
      form.setAttribute("aria-busy", "true");
      // Passwords go back to type=password so managers see them as such.
      form.querySelectorAll("input[data-password-toggle]").forEach(function (input) {
        input.type = "password";
      });
      submitButtons(form).forEach(function (button) {
        if (button.tagName === "INPUT") {
          button.setAttribute("data-label", button.value);
          button.value = BUSY_LABEL;
        } else {
          button.setAttribute("data-label", button.innerHTML);
          button.textContent = BUSY_LABEL;
          button.classList.add("is-busy");
        }
        button.disabled = true;
      });
    }, 0);
  });

  // Back/forward cache: a page restored after submitting must be usable again.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;
    document.querySelectorAll('form[data-submitting="true"]').forEach(function (form) {
      form.removeAttribute("data-submitting");
      form.removeAttribute("aria-busy");
      submitButtons(form).forEach(function (button) {
        var label = button.getAttribute("data-label");
        if (label !== null) {
          if (button.tagName === "INPUT") button.value = label;
          else button.innerHTML = label;
          button.removeAttribute("data-label");
        }
        button.classList.remove("is-busy");
        button.disabled = false;
      });
    });
  });

  // -- show / hide password --------------------------------------------------

  function setToggle(button, input) {
    var shown = input.type === "text";
    button.textContent = shown ? "Hide" : "Show";
    var rest = document.createElement("span");
    rest.className = "visually-hidden";
    rest.textContent = " password";
    button.appendChild(rest);
  }

  document.querySelectorAll("input[data-password-toggle]").forEach(function (input) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "input-toggle";
    if (input.id) button.setAttribute("aria-controls", input.id);
    setToggle(button, input);
    button.addEventListener("click", function () {
      input.type = input.type === "password" ? "text" : "password";
      setToggle(button, input);
      input.focus();
    });
    var group = input.parentElement;
    if (group) group.classList.add("has-toggle");
    input.insertAdjacentElement("afterend", button);
  });

  // -- relative dates --------------------------------------------------------

  if (window.Intl && Intl.RelativeTimeFormat && Intl.DateTimeFormat) {
    var relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
    var exact = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
    var UNITS = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400], ["hour", 3600], ["minute", 60]];
    document.querySelectorAll("time[data-relative]").forEach(function (node) {
      var when = new Date(node.getAttribute("datetime").replace(" ", "T"));
      if (isNaN(when.getTime())) return;
      var seconds = (when.getTime() - Date.now()) / 1000;
      var text = null;
      if (Math.abs(seconds) < 60) {
        text = "just now";
      } else {
        for (var i = 0; i < UNITS.length; i++) {
          if (Math.abs(seconds) >= UNITS[i][1] || UNITS[i][0] === "minute") {
            text = relative.format(Math.round(seconds / UNITS[i][1]), UNITS[i][0]);
            break;
          }
        }
      }
      node.title = exact.format(when);
      node.textContent = text;
    });
  }

  // -- focus, tabs -----------------------------------------------------------

  var autofocus = document.querySelector("[data-autofocus]");
  if (autofocus) autofocus.focus();

  document.querySelectorAll(".subnav").forEach(function (nav) {
    var current = nav.querySelector("[aria-current]");
    if (current && nav.scrollWidth > nav.clientWidth) {
      nav.scrollLeft = current.offsetLeft - (nav.clientWidth - current.offsetWidth) / 2;
    }
  });

  // -- fields that depend on another field -----------------------------------

  function currentValue(form, name) {
    var control = form.elements.namedItem(name);
    if (!control) return "";
    if (control instanceof RadioNodeList) return control.value;
    return control.value || "";
  }

  document.querySelectorAll("form").forEach(function (form) {
    var dependents = form.querySelectorAll("[data-show-when]");
    if (!dependents.length) return;
    function update() {
      dependents.forEach(function (node) {
        var rule = node.getAttribute("data-show-when").split(":");
        var values = (rule[1] || "").split(" ");
        var shown = values.indexOf(currentValue(form, rule[0])) !== -1;
        node.hidden = !shown;
      });
    }
    form.addEventListener("change", update);
    update();
  });

  // -- dialogs ---------------------------------------------------------------

  document.querySelectorAll("[data-dialog-open]").forEach(function (opener) {
    var dialog = document.getElementById(opener.getAttribute("data-dialog-open"));
    if (!dialog || typeof dialog.showModal !== "function") return;
    opener.addEventListener("click", function (event) {
      event.preventDefault();
      dialog.showModal();
    });
  });

  // -- copy to clipboard -----------------------------------------------------

  if (navigator.clipboard && window.isSecureContext) {
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      var label = button.textContent;
      var timer = null;
      button.hidden = false;
      button.addEventListener("click", function () {
        var source = document.getElementById(button.getAttribute("data-copy"));
        if (!source) return;
        navigator.clipboard.writeText(source.textContent.trim()).then(
          function () {
            button.textContent = "Copied";
            announce("Copied to the clipboard");
          },
          function () {
            button.textContent = "Copy failed";
            announce("Could not copy");
          }
        ).then(function () {
          window.clearTimeout(timer);
          timer = window.setTimeout(function () { button.textContent = label; }, 2000);
        });
      });
    });
  }
})();

/* Appointment pages: show times in the visitor's own time zone.
   A page marked data-detect-time-zone was rendered without ?tz=; this reloads it once
   with the browser's zone (Intl), unless that is already the zone it shows. */
(function () {
  "use strict";
  var page = document.querySelector("[data-detect-time-zone]");
  if (!page || !window.Intl || !Intl.DateTimeFormat) {
    return;
  }
  var url = new URL(window.location.href);
  if (url.searchParams.has("tz")) {
    return;
  }
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (!zone || zone === page.getAttribute("data-time-zone")) {
    return;
  }
  url.searchParams.set("tz", zone);
  window.location.replace(url.toString());
})();

/* edit.js: progressive enhancement of the edit page (web/templates/edit.html).
 * Without it the form works the same; the server checks everything again.
 * - Choosing a picture shows a preview in place of the current one.
 * - A file larger than the server accepts (data-max-bytes), or not a JPEG,
 *   PNG, GIF or WebP image, is refused before it is uploaded: the error is
 *   shown next to the field and the field is cleared, so Save keeps the
 *   current picture instead of sending megabytes to be refused.
 * Loaded as an external file: the Content-Security-Policy forbids inline script. */
(function () {
  "use strict";
  var input = document.getElementById("picture");
  var error = document.getElementById("picture-error");
  var preview = document.getElementById("picture-preview");
  var caption = document.getElementById("picture-caption");
  if (!input || !error || !window.URL || !URL.createObjectURL) return;

  var maxBytes = parseInt(input.getAttribute("data-max-bytes"), 10) || 0;
  var tooLarge = input.getAttribute("data-too-large") || "The picture is too large.";
  var types = ["image/jpeg", "image/png", "image/gif", "image/webp"];
  var current = preview ? { src: preview.getAttribute("src"), alt: preview.getAttribute("alt"),
                            caption: caption ? caption.textContent : "" } : null;
  var objectUrl = null;

  function showError(message) {
    error.textContent = message;
    error.hidden = !message;
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }

  function restorePreview() {
    if (objectUrl) { URL.revokeObjectURL(objectUrl); objectUrl = null; }
    if (!preview || !current) return;
    preview.src = current.src;
    preview.alt = current.alt;
    if (caption) caption.textContent = current.caption;
  }

  if (preview) {
    /* The browser cannot decode the chosen file: the server would refuse it too. */
    preview.addEventListener("error", function () {
      if (!objectUrl) return;
      input.value = "";
      restorePreview();
      showError("The file is not a JPEG, PNG, GIF or WebP image.");
    });
  }

  input.addEventListener("change", function () {
    var file = input.files && input.files[0];
    restorePreview();
    showError("");
    if (!file) return;
    if (maxBytes > 0 && file.size > maxBytes) {
      input.value = "";
      showError(tooLarge + " Please choose a smaller one.");
      return;
    }
    if (file.type && types.indexOf(file.type) < 0) {
      input.value = "";
      showError("The file is not a JPEG, PNG, GIF or WebP image.");
      return;
    }
    if (!preview) return;
    objectUrl = URL.createObjectURL(file);
    preview.src = objectUrl;
    preview.alt = "Preview of the new picture";
    if (caption) caption.textContent = "New picture (saved when you press Save)";
  });
})();
